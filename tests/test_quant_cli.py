"""`minislm quantize` and `minislm export-gguf` end to end."""
import json

import numpy as np
import pytest

import minislm
from minislm.cli import main


@pytest.fixture(scope="module")
def gpt2_with_tokenizer(tmp_path_factory):
    from conftest import build_hf_model, save_hf_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    folder = save_hf_model(build_hf_model("gpt2", d_model=64, vocab_size=300),
                           tmp_path_factory.mktemp("cli") / "gpt2")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(["the cat sat on the mat " * 50],
                            trainers.BpeTrainer(vocab_size=280, initial_alphabet=alphabet))
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_quantize_command_writes_a_loadable_smaller_model(gpt2_with_tokenizer, tmp_path, capsys):
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat and the dog sat on the log. " * 40)
    out = tmp_path / "q"
    rc = main(["quantize", "--model", str(gpt2_with_tokenizer), "--method", "gptq", "--bits", "4",
               "--group-size", "32", "--act-order", "--eora-rank", "2", "--calib", str(calib),
               "--n-samples", "4", "--seq-len", "16", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "‖WX−ŴX‖²/n" in printed and "bytes" in printed
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "minislm" and qc["bits"] == 4 and qc["group_size"] == 32
    assert qc["method"] == "gptq" and qc["act_order"] is True and qc["eora_rank"] == 2
    model = minislm.load(out)
    logits = minislm.forward(model, np.array([[1, 2, 3]]))
    assert logits.shape == (1, 3, 300) and logits.dtype == np.float32
    ref = minislm.load(gpt2_with_tokenizer)
    assert (out / "model.safetensors").stat().st_size < \
        (gpt2_with_tokenizer / "model.safetensors").stat().st_size
    assert np.abs(logits - minislm.forward(ref, np.array([[1, 2, 3]]))).max() < 0.5


def test_awq_command(gpt2_with_tokenizer, tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("the cat sat on the mat. " * 60)
    rc = main(["quantize", "--model", str(gpt2_with_tokenizer), "--method", "awq", "--bits", "3",
               "--group-size", "32", "--calib", str(calib), "--n-samples", "4", "--seq-len", "16",
               "--out", str(tmp_path / "awq")])
    assert rc == 0
    model = minislm.load(tmp_path / "awq")
    assert model.extra_config["quantization_config"]["method"] == "awq"
    qt = model.params["transformer.h.0.mlp.c_fc.weight"]
    assert qt.input_scale is not None and qt.input_scale.shape == (64,)


def test_rtn_command_and_bad_options(gpt2_with_tokenizer, tmp_path, capsys):
    rc = main(["quantize", "--model", str(gpt2_with_tokenizer), "--method", "rtn", "--bits", "8",
               "--group-size", "-1", "--sym", "--out", str(tmp_path / "q8")])
    assert rc == 0
    assert minislm.load(tmp_path / "q8").extra_config["quantization_config"]["sym"] is True
    rc = main(["quantize", "--model", str(gpt2_with_tokenizer), "--method", "rtn", "--bits", "9",
               "--out", str(tmp_path / "bad")])
    assert rc == 2 and "bits" in capsys.readouterr().err
    rc = main(["quantize", "--model", str(gpt2_with_tokenizer), "--method", "gptq",
               "--calib", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "bad")])
    assert rc == 2 and "missing.txt" in capsys.readouterr().err


def test_export_gguf_command(gpt2_with_tokenizer, tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    out = tmp_path / "m.gguf"
    assert main(["export-gguf", "--model", str(gpt2_with_tokenizer), "--type", "q8_0",
                 "--out", str(out)]) == 0
    reader = gguf.GGUFReader(str(out))
    assert {t.name for t in reader.tensors} >= {"token_embd.weight", "blk.1.attn_qkv.weight"}
    assert "wrote" in capsys.readouterr().out
