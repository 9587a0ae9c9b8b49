"""GGUF export: the file parses with the `gguf` reader and runs in llama.cpp (llama-cpp-python)."""
import json

import numpy as np
import pytest

import minislm
from minislm.quant.gguf_blocks import dequantize_blocks, quantize_blocks
from minislm.gguf.convert import rope_rows_to_pairs
from minislm.quant.gguf_export import export_gguf

gguf = pytest.importorskip("gguf")
TEXT = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
        "How vexingly quick daft zebras jump! 0123456789 ") * 20


def _with_tokenizer(folder, vocab_size):
    """Train a small byte-level BPE beside the weights; bos/eos point at its special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 20, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT], trainer)
    tok.save(str(folder / "tokenizer.json"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["bos_token_id"] = cfg["eos_token_id"] = tok.token_to_id("<|endoftext|>")
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from conftest import build_hf_model, save_hf_model
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for family in ("gpt2", "llama"):
        hf = build_hf_model(family, d_model=64, vocab_size=320,
                            d_ff=64 if family == "llama" else None)
        folder = save_hf_model(hf, root / family)
        out[family] = minislm.load(_with_tokenizer(folder, 320))
    return out


def test_rope_rows_to_pairs_interleaves_halves():
    W = np.arange(8, dtype=np.float32)[:, None]             # one head, D = 8: rows 0..7
    np.testing.assert_array_equal(rope_rows_to_pairs(W, 1)[:, 0], [0, 4, 1, 5, 2, 6, 3, 7])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("qtype", ["f32", "q8_0", "q4_1"])
def test_gguf_file_parses_with_reference_reader(models, family, qtype, tmp_path):
    model = models[family]
    path, size = export_gguf(model, tmp_path / "m.gguf", qtype)
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    assert arch == family
    assert len(fields["tokenizer.ggml.tokens"].data) == model.config.vocab_size
    tensors = {t.name: t for t in reader.tensors}
    assert "blk.0.ffn_down.weight" in tensors and "token_embd.weight" in tensors
    down = tensors["blk.1.ffn_down.weight"]
    name = "transformer.h.1.mlp.c_proj.weight" if family == "gpt2" else \
        "model.layers.1.mlp.down_proj.weight"
    W = model.params[name]
    W = W.T if family == "gpt2" else W                       # GGUF rows are (out, in)
    assert down.tensor_type.name.lower() == qtype
    if qtype == "f32":
        np.testing.assert_array_equal(np.asarray(down.data).reshape(W.shape), W)
    else:
        np.testing.assert_array_equal(np.asarray(down.data).reshape(W.shape[0], -1),
                                      quantize_blocks(W, qtype))


def _dequantized_like_gguf(model, qtype):
    """The model with every 2-D tensor replaced by its GGUF round trip (what llama.cpp holds)."""
    params = {}
    for k, v in model.params.items():
        if v.ndim == 2 and qtype != "f32":
            rows = v.T if model.config.family == "gpt2" and not k.endswith(("wte.weight",
                                                                             "wpe.weight")) else v
            rt = dequantize_blocks(quantize_blocks(rows, qtype), qtype)
            params[k] = np.ascontiguousarray(rt.T if rows is not v else rt)
        else:
            params[k] = v
    return model.replace(params=params)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("qtype", ["f32", "f16", "q8_0", "q4_0"])
def test_llama_cpp_runs_exported_model(models, family, qtype, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    model = models[family]
    path, _ = export_gguf(model, tmp_path / "m.gguf", qtype)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=1)
    text = "The quick brown fox jumps"
    ids = model.tokenizer.encode(text).ids
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    llm.eval(ids)
    theirs = np.asarray(llm.scores[:len(ids)])
    ref_model = model if qtype in ("f32", "f16") else _dequantized_like_gguf(model, qtype)
    ours = minislm.forward(ref_model, np.array([ids]))[0]
    scale = float(np.abs(ours).max())
    # f32 agrees to round-off; f16 and quantized types also quantize activations in llama.cpp
    tol = {"f32": 1e-3, "f16": 5e-3, "q8_0": 0.03, "q5_0": 0.05, "q4_0": 0.05}[qtype]
    assert np.abs(theirs - ours).max() <= tol * scale
    if qtype != "f32":                                       # the weights really are smaller
        assert path.stat().st_size < 0.6 * (export_gguf(model, tmp_path / "f.gguf")[1])


def test_tied_llama_without_tokenizer_runs_from_token_ids(tmp_path):
    """Tied head -> no `output.weight` (llama.cpp reuses token_embd); no tokenizer -> no_vocab."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from conftest import build_hf_model, save_hf_model
    folder = save_hf_model(build_hf_model("llama", d_model=64, d_ff=64, tied=True), tmp_path / "t")
    model = minislm.load(folder)
    assert model.tokenizer is None and model.config.tied
    path, _ = export_gguf(model, tmp_path / "t.gguf", "f32")
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert "output.weight" not in names and "rope_freqs.weight" in names
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False,
                          n_threads=1)
    ids = [3, 14, 15, 92, 65, 35]
    llm.eval(ids)
    ours = minislm.forward(model, np.array([ids]))[0]
    assert np.abs(np.asarray(llm.scores[:len(ids)]) - ours).max() <= 1e-3 * np.abs(ours).max()
