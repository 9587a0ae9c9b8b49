"""Fine-tuning, special tool tokens and the finetune/distill commands, end to end on tiny models."""
from __future__ import annotations

import json

import numpy as np
import pytest

import minislm
from minislm.adapt import distill, lora, special_tokens
from minislm.adapt import finetune as ft
from minislm.cli import main
from minislm.config import Config
from minislm.errors import ConfigError, InputError
from minislm.train.init import hf_config_dict, init_model

from conftest import assert_adapter_grads_equal_over_dense_copy, hf_logits


@pytest.fixture(scope="module")
def tokenizer():
    from minislm.data import task_texts, train_tokenizer
    return train_tokenizer(task_texts("toolcall") + task_texts("requirements"), vocab_size=400)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """Tiny random models with a real tokenizer, saved by minislm: {'gpt2', 'llama'}."""
    root = tmp_path_factory.mktemp("adapt")
    out = {}
    for family, tied in (("gpt2", True), ("llama", False)):
        cfg = Config.from_hf_dict(hf_config_dict(family, tokenizer.get_vocab_size(), 32, 2, 4,
                                                 64, 128, n_kv_head=2, tied=tied, eos_id=0,
                                                 bos_id=0))
        out[family] = minislm.save(init_model(cfg, seed=1, tokenizer=tokenizer), root / family)
    return out


def test_examples_mask_the_prompt_and_end_with_eos(tokenizer):
    examples = ft.load_examples(tokenizer, "toolcall", 128)
    ids, labels = examples[0]
    prompt_len = int((labels == -100).sum())
    assert 0 < prompt_len < len(ids)
    assert ids[-1] == tokenizer.token_to_id("<|endoftext|>")
    text = tokenizer.decode(ids[prompt_len:].tolist())
    assert text.strip().startswith("<tool_call>") or "<tool_call>" not in text
    batch_ids, batch_labels = ft.make_batch(examples, [0, 1, 2], pad_id=1)
    assert batch_ids.shape == batch_labels.shape and batch_ids.dtype == np.int64
    assert (batch_labels[batch_ids == 1] == -100).all()


def test_examples_from_files(tokenizer, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "Call Mom.", "response": "<tool_call>[]</tool_call>"})
                    + "\n" + json.dumps({"text": "The system shall log every access."}) + "\n")
    assert len(ft.load_examples(tokenizer, str(rows), 64)) == 2
    text = tmp_path / "corpus.txt"
    text.write_text("The system shall respond. " * 40)
    windows = ft.load_examples(tokenizer, str(text), 16)
    assert len(windows) > 2 and all(len(i) <= 16 for i, _ in windows)
    with pytest.raises(InputError, match="toolcall"):
        ft.load_examples(tokenizer, str(tmp_path / "missing.txt"), 16)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": 1}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        ft.load_examples(tokenizer, str(bad), 16)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_full_finetune_lowers_the_loss_and_keeps_the_input(folders, family):
    m = minislm.load(folders[family])
    before = {k: v.copy() for k, v in m.params.items()}
    examples = ft.load_examples(m.tokenizer, "toolcall", 96)
    tuned, losses = ft.finetune(m, examples, steps=12, lr=3e-3, batch_size=8, progress=False)
    assert np.mean(losses[-3:]) < losses[0] - 0.3
    assert all(np.array_equal(before[k], m.params[k]) for k in before)
    assert all(tuned.params[k].dtype == np.float32 for k in tuned.params)


def test_lora_finetune_trains_only_the_adapters(folders):
    m = minislm.load(folders["llama"])
    lm = lora.add_lora(m, rank=4, alpha=8, dropout=0.1, targets=["q_proj", "v_proj", "up_proj"])
    examples = ft.load_examples(m.tokenizer, "toolcall", 96)
    tuned, losses = ft.finetune(lm, examples, steps=10, lr=1e-2, batch_size=8, progress=False)
    assert np.mean(losses[-3:]) < losses[0]
    for name, w in lora.lora_weights(tuned).items():
        assert w.base is m.params[name]                       # frozen, shared, untouched
        assert np.abs(w.B).max() > 0 and w.dropout_seed is None
    for name, v in m.params.items():
        if name not in lora.lora_weights(tuned):
            assert tuned.params[name] is v


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_add_tool_tokens_resizes_and_transformers_loads(folders, tmp_path, family):
    transformers = pytest.importorskip("transformers")
    m = minislm.load(folders[family])
    V = m.config.vocab_size
    grown = special_tokens.add_tokens(m)
    assert grown.config.vocab_size == V + 2 and m.config.vocab_size == V
    assert m.tokenizer.token_to_id("<tool_call>") is None          # the input is unchanged
    open_id, close_id = special_tokens.token_ids(grown)
    text = ' <tool_call>[{"name": "make_call"}]</tool_call>'
    ids = grown.tokenizer.encode(text).ids
    assert open_id in ids and close_id in ids
    assert grown.tokenizer.decode(ids) == text                      # kept when decoding
    names = ["model.embed_tokens.weight", "lm_head.weight"] if family == "llama" \
        else [grown.prefix + "wte.weight"]
    for name in names:
        E = m.params[name]
        np.testing.assert_allclose(grown.params[name][V:], np.repeat(E.mean(0)[None], 2, 0),
                                   atol=1e-6)
        np.testing.assert_array_equal(grown.params[name][:V], E)
    probe = np.array([[5, 9, 31, 2]])
    np.testing.assert_allclose(minislm.forward(grown, probe)[..., :V], minislm.forward(m, probe),
                               atol=1e-6)                            # old logits unchanged
    folder = minislm.save(grown, tmp_path / "grown")
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids2 = np.array([ids])
    np.testing.assert_allclose(hf_logits(ref, ids2), minislm.forward(grown, ids2), atol=1e-5)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert hf_tok.convert_tokens_to_ids("<tool_call>") == open_id
    assert hf_tok(text)["input_ids"] == ids


def test_distill_moves_the_student_towards_the_teacher(folders):
    teacher = minislm.load(folders["llama"])
    teacher, _ = ft.finetune(teacher, ft.load_examples(teacher.tokenizer, "toolcall", 96),
                             steps=10, lr=3e-3, batch_size=8, progress=False)
    student = minislm.load(folders["llama"])
    examples = ft.load_examples(student.tokenizer, "toolcall", 96)
    trained, history = distill.distill(teacher, student, examples, steps=10, temperature=2.0,
                                       alpha=1.0, lr=3e-3, batch_size=8, progress=False)
    assert len(history) == 10 and history[-1][1] < history[0][1]   # KD term falls
    with pytest.raises(ConfigError, match="vocab_size"):
        grown = special_tokens.add_tokens(student)
        distill.distill(teacher, grown, examples, steps=1, progress=False)



@pytest.mark.parametrize("command, flags, words", [
    ("finetune", ["--lr", "inf"], "lr=inf"),
    ("finetune", ["--weight-decay", "nan"], "weight decay"),
    ("finetune", ["--lora-rank", "2", "--lora-alpha", "nan", "--merge"], "alpha"),
    ("finetune", ["--seed", "-1"], "seed"),
    ("distill", ["--lr", "inf"], "lr=inf"),
    ("distill", ["--temperature", "inf"], "temperature"),
])
def test_non_finite_numbers_are_refused_before_any_work(folders, tmp_path, capsys, command,
                                                        flags, words):
    """Once `finetune --lr inf` (and --weight-decay nan, --lora-alpha nan --merge) wrote a
    NaN checkpoint and exited 0."""
    src, out = str(folders["gpt2"]), tmp_path / "out"
    models = ["--model", src] if command == "finetune" else ["--teacher", src, "--student", src]
    assert main([command, *models, "--data", "requirements", "--steps", "2", "--batch-size",
                 "2", "--out", str(out), *flags]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("minislm: error:") and words in last, last
    assert not any(out.glob("*.safetensors"))


def test_a_diverging_finetune_raises_instead_of_returning_nan(folders):
    """lr = 1e38 passes as a finite number, but the first AdamW update overflows float32
    (the loss of that step is still finite): the run must stop, not return NaN weights."""
    from minislm.errors import NumericalError
    m = minislm.load(folders["gpt2"])
    examples = ft.load_examples(m.tokenizer, "requirements", 32)
    with pytest.raises(NumericalError, match="non-finite"):
        ft.finetune(m, examples, steps=1, lr=1e38, batch_size=2, progress=False)
    lm = lora.add_lora(m, rank=2)
    with pytest.raises(NumericalError, match="non-finite"):
        ft.finetune(lm, examples, steps=1, lr=1e38, batch_size=2, progress=False)


def test_finetune_and_distill_memory_preflight(folders, monkeypatch):
    """Under a limit below the optimiser state plus the kept activations, no step runs."""
    from minislm import resources
    from minislm.errors import ResourceError
    m = minislm.load(folders["gpt2"])
    examples = ft.load_examples(m.tokenizer, "requirements", 64)
    T = max(len(ids) for ids, _ in examples)
    need = resources.check_training(m, 64, T, ft.trainable_tensors(m))
    calls = []
    monkeypatch.setattr(ft, "loss_and_grads", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(distill, "loss_and_grads", lambda *a, **k: calls.append(1))
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need - 1))
    with pytest.raises(ResourceError, match=f"finetune with batches of 64 × {T} tokens"):
        ft.finetune(m, examples, steps=2, batch_size=64, progress=False)
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need))      # the teacher needs more
    with pytest.raises(ResourceError, match="distill with batches"):
        distill.distill(m, m, examples, steps=2, batch_size=64, progress=False)
    assert calls == []


def test_finetune_command_memory_preflight(folders, tmp_path, monkeypatch, capsys):
    """`finetune --batch-size 64` under a limit the model loads in: refused with the
    numbers, before any step and before anything is written."""
    from minislm import resources
    from minislm.checkpoint import read_header
    src = folders["gpt2"]
    m = minislm.load(src)
    entries = list(read_header(src / "model.safetensors")[0].values())
    monkeypatch.delenv("MINISLM_MEMORY_LIMIT", raising=False)
    load_need = resources.check_load(src, m.config, entries)
    train_need = resources.check_training(m, 64, m.config.max_position,
                                          ft.trainable_tensors(m))
    assert load_need < train_need // 2
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(train_need // 2))
    out = tmp_path / "out"
    assert main(["finetune", "--model", str(src), "--data", "requirements", "--steps", "2",
                 "--batch-size", "64", "--out", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("minislm: error: finetune with batches of 64") and \
        "MINISLM_MEMORY_LIMIT" in last, last
    assert not any(out.glob("*.safetensors"))


def test_new_tokens_on_padding_rows_get_the_mean_row(tokenizer):
    """An embedding padded beyond the tokenizer (rows n … V−1 used by no token): the new
    ids land on padding rows, and those rows must get ē like appended ones."""
    n = tokenizer.get_vocab_size()
    cfg = Config.from_hf_dict(hf_config_dict("llama", n + 6, 32, 1, 4, 64, 64, n_kv_head=2,
                                             tied=False, eos_id=0, bos_id=0))
    m = init_model(cfg, seed=1, tokenizer=tokenizer)
    names = ["model.embed_tokens.weight", "lm_head.weight"]
    padded = {name: np.concatenate([m.params[name][:n], np.zeros((6, 32), np.float32)])
              for name in names}                         # zero rows, as padded checkpoints have
    m = m.replace(params={**m.params, **padded})
    grown = special_tokens.add_tokens(m)
    ids = special_tokens.token_ids(grown)
    assert ids == [n, n + 1] and grown.config.vocab_size == n + 6
    for name in names:
        E, E2 = m.params[name], grown.params[name]
        mean = E[:n].mean(0, dtype=np.float64).astype(np.float32)
        np.testing.assert_allclose(E2[ids], np.stack([mean, mean]), atol=1e-7)
        assert np.linalg.norm(E2[ids], axis=1).min() > 0.5 * np.linalg.norm(mean)
        np.testing.assert_array_equal(np.delete(E2, ids, axis=0), np.delete(E, ids, axis=0))


def test_finetune_command_full_lora_and_merge(folders, tmp_path, capsys):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    src = folders["gpt2"]
    assert main(["finetune", "--model", str(src), "--data", "requirements", "--steps", "3",
                 "--out", str(tmp_path / "full"), "--batch-size", "4"]) == 0
    full = minislm.load(tmp_path / "full")
    assert json.loads((tmp_path / "full" / "minislm_finetune.json").read_text())["steps"] == 3
    ids = np.array([[3, 4, 5, 6]])
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "full")).eval()
    np.testing.assert_allclose(hf_logits(ref, ids), minislm.forward(full, ids), atol=1e-5)

    common = ["finetune", "--model", str(src), "--data", "toolcall", "--steps", "3",
              "--lora-rank", "4", "--lora-alpha", "8", "--targets", "c_attn,c_fc",
              "--lr", "1e-2", "--batch-size", "4"]
    assert main(common + ["--out", str(tmp_path / "adapter")]) == 0
    assert main(common + ["--out", str(tmp_path / "merged"), "--merge"]) == 0
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["c_attn", "c_fc"]
    base = transformers.AutoModelForCausalLM.from_pretrained(str(src))
    pm = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    merged = minislm.load(tmp_path / "merged")
    np.testing.assert_allclose(hf_logits(pm, ids), minislm.forward(merged, ids), atol=1e-5)
    assert main(["finetune", "--model", str(src), "--data", "toolcall", "--steps", "1",
                 "--out", str(tmp_path / "x"), "--merge"]) == 2        # --merge without LoRA
    assert "--lora-rank" in capsys.readouterr().err


def test_distill_command(folders, tmp_path, capsys):
    src = folders["llama"]
    assert main(["distill", "--teacher", str(src), "--student", str(src), "--data", "toolcall",
                 "--temperature", "2", "--alpha", "0.5", "--steps", "2", "--out",
                 str(tmp_path / "student"), "--batch-size", "4"]) == 0
    log = json.loads((tmp_path / "student" / "minislm_distill.json").read_text())
    assert log["held_out_before"]["kd"] < 1e-6                       # student == teacher at start
    assert minislm.load(tmp_path / "student").config == minislm.load(src).config
    assert "KD" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_with_tool_tokens_saves_modules_to_save_that_peft_loads(folders, tmp_path, family):
    """QLoRA-style recipe of the voice thesis: tool tokens + LoRA, the resized embedding
    (and untied head) trained whole and saved as PEFT modules_to_save with the tokenizer."""
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    src, out = folders[family], tmp_path / "adapter"
    targets = "q_proj,v_proj" if family == "llama" else "c_attn"
    assert main(["finetune", "--model", str(src), "--data", "toolcall", "--steps", "3",
                 "--lora-rank", "2", "--targets", targets, "--lr", "1e-2", "--batch-size", "4",
                 "--add-tool-tokens", "--out", str(out)]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["modules_to_save"] == (["embed_tokens", "lm_head"] if family == "llama"
                                         else ["lm_head", "wte"])
    assert (out / "tokenizer.json").exists()
    base = minislm.load(src)
    with pytest.raises(minislm.errors.CheckpointError, match="added tokens"):
        lora.load_adapter(base, out)                       # the base still has the old vocab
    ours = lora.load_adapter(special_tokens.add_tokens(base), out)
    V = base.config.vocab_size
    assert np.abs(ours.params[ours.prefix + "wte.weight" if family == "gpt2" else
                              "model.embed_tokens.weight"][V:]).max() > 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(src))
    hf.resize_token_embeddings(V + 2)
    pm = peft.PeftModel.from_pretrained(hf, str(out)).eval()
    ids = np.array([ours.tokenizer.encode(" <tool_call>[{").ids + [3, 4]])
    np.testing.assert_allclose(hf_logits(pm, ids), minislm.forward(ours, ids), atol=1e-5)


def test_qlora_gradients_equal_lora_over_the_dequantized_weights(folders):
    """Gradients pass through the frozen quantized linears (QuantizedTensor.linear_backward),
    so the adapter gradients over a 4-bit model equal those over its dequantized copy."""
    from minislm.quant.model_quant import quantize_model
    quantized, _ = quantize_model(minislm.load(folders["llama"]), "rtn", bits=4, group_size=16,
                                  progress=False)
    assert_adapter_grads_equal_over_dense_copy(quantized, loss_atol=1e-5, rtol=1e-4)


def test_qlora_command_over_a_quantized_checkpoint(folders, tmp_path):
    """LoRA over a 4-bit RTN checkpoint with the default targets (the other quantized
    linears stay frozen): the adapter trains, saves and loads back onto the checkpoint."""
    from minislm.quant.model_quant import quantize_model
    quantized, _ = quantize_model(minislm.load(folders["llama"]), "rtn", bits=4, group_size=16,
                                  progress=False)
    src = minislm.save(quantized, tmp_path / "q4")
    assert main(["finetune", "--model", str(src), "--data", "toolcall", "--steps", "2",
                 "--lora-rank", "2", "--batch-size", "4", "--out", str(tmp_path / "adapter")]) == 0
    tuned = lora.load_adapter(minislm.load(src), tmp_path / "adapter")
    assert len(lora.lora_weights(tuned)) == 2 * quantized.config.n_layer
    assert any(np.abs(w.B).max() > 0 for w in lora.lora_weights(tuned).values())
    assert np.isfinite(minislm.forward(tuned, np.array([[3, 4, 5]]))).all()
