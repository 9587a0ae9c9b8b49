"""Optimiser, schedule, trainer (determinism, resume, masks) and the `minislm train` CLI."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minislm
from minislm.config import Config
from minislm.errors import CheckpointError, ConfigError, InputError, NumericalError
from minislm.train.data import eval_windows, random_batch, unigram_perplexity
from minislm.train.init import hf_config_dict, init_model
from minislm.train.optim import (AdamWState, adamw_step, clip_by_global_norm, global_norm,
                                 learning_rate)
from minislm.train.trainer import TrainOptions, evaluate_loss, train


@settings(max_examples=30, deadline=None)
@given(total=st.integers(2, 500), warmup=st.integers(0, 50), peak=st.floats(1e-5, 1.0),
       schedule=st.sampled_from(["cosine", "linear", "constant"]))
def test_learning_rate_schedule(total, warmup, peak, schedule):
    minimum = peak / 10
    lrs = [learning_rate(s, total, peak, warmup, minimum, schedule) for s in range(total)]
    assert all(0 < lr <= peak * (1 + 1e-12) for lr in lrs)
    if warmup:  # linear ramp to the peak
        assert np.allclose(lrs[:min(warmup, total)],
                           [peak * (s + 1) / warmup for s in range(min(warmup, total))])
    after = lrs[warmup:]
    assert all(a >= b - 1e-15 for a, b in zip(after, after[1:]))  # never rises after warm-up
    if after:
        assert math.isclose(after[0], peak)
        if schedule != "constant" and total - warmup > 1:
            assert math.isclose(after[-1], minimum, rel_tol=1e-9)
    with pytest.raises(ConfigError):
        learning_rate(0, total, peak, warmup, minimum, "step")


def test_adamw_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.AdamW([{"params": [tparams["w"]], "weight_decay": 0.1},
                             {"params": [tparams["b"]], "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.95), eps=1e-8)
    state = AdamWState()
    for step in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, g in grads.items():
            tparams[k].grad = torch.tensor(g)
        opt.step()
        adamw_step(params, grads, state, 0.01, (0.9, 0.95), 1e-8, weight_decay=0.1)
    assert state.step == 5
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12)


def test_adamw_keeps_float32():
    params = {"w": np.ones((2, 2), np.float32)}
    state = AdamWState()
    adamw_step(params, {"w": np.full((2, 2), 0.5, np.float32)}, state, 1e-3, weight_decay=0.1)
    assert params["w"].dtype == np.float32 and state.m["w"].dtype == np.float32
    assert np.all(params["w"] < 1)


def test_clip_by_global_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm == 5.0 and math.isclose(global_norm(clipped), 1.0)
    assert clip_by_global_norm(grads, 10.0)[0] is grads
    assert grads["a"][0] == 3.0   # inputs untouched


def test_batches_and_unigram():
    stream = np.arange(100, dtype=np.int32) % 7
    a = random_batch(stream, 4, 10, seed=1, step=3)
    assert a.shape == (4, 10) and a.dtype == np.int64
    np.testing.assert_array_equal(a, random_batch(stream, 4, 10, seed=1, step=3))
    assert not np.array_equal(a, random_batch(stream, 4, 10, seed=1, step=4))
    windows = eval_windows(stream, 10, max_tokens=35)
    assert windows.shape == (3, 10)
    # a uniform stream over 7 symbols of a vocabulary of 7: perplexity 7
    assert math.isclose(unigram_perplexity(np.arange(700) % 7, windows, 7), 7.0, rel_tol=1e-9)
    with pytest.raises(InputError):
        random_batch(stream[:5], 1, 10, 0, 0)


def tiny_model(family="llama", seed=0):
    d = hf_config_dict(family, 16, 16, 2, 2, 32, 32, n_kv_head=1, tied=family == "gpt2",
                       eos_id=0, bos_id=0)
    return init_model(Config.from_hf_dict(d), seed)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_training_learns_and_resumes_exactly(tmp_path, family):
    model = tiny_model(family)
    stream = np.tile(np.array([1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 6, 8], np.int32), 40)
    val = eval_windows(stream, 16)
    opts = TrainOptions(steps=40, batch_size=4, seq_len=16, lr=1e-2, min_lr=1e-3, warmup=5,
                        seed=3, eval_every=0, save_every=20)
    before = {k: v.copy() for k, v in model.params.items()}
    trained, history = train(model, stream, opts, val_windows=val, out=tmp_path / "a",
                             progress=False)
    for k, v in model.params.items():   # the input model is never modified
        np.testing.assert_array_equal(v, before[k])
    assert history[-1]["val_loss"] < 0.5 * evaluate_loss(model, val)
    assert len(history) == 40 and history[-1]["tokens"] == 40 * 4 * 16
    # stop after 20 steps, then resume to 40: the same parameters as the straight run
    train(model, stream, opts, out=tmp_path / "b", progress=False, stop_after=20)
    resumed, history_b = train(model, stream, opts, out=tmp_path / "b", resume=True,
                               progress=False)
    assert [h["loss"] for h in history_b] == [h["loss"] for h in history]
    for k in trained.params:
        np.testing.assert_array_equal(resumed.params[k], trained.params[k])
    reloaded = minislm.load(tmp_path / "b")
    for k in trained.params:
        np.testing.assert_array_equal(reloaded.params[k], trained.params[k])
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["step"] == 40


def test_resume_without_state_and_masks(tmp_path):
    model = tiny_model("llama")
    stream = np.arange(200, dtype=np.int32) % 16
    opts = TrainOptions(steps=3, batch_size=2, seq_len=8, warmup=1, eval_every=0)
    with pytest.raises(CheckpointError, match="no trainer state"):
        train(model, stream, opts, out=tmp_path, resume=True, progress=False)
    name = "model.layers.0.mlp.up_proj.weight"
    mask = np.random.default_rng(0).random(model.params[name].shape) < 0.5
    masked = model.replace(params={**model.params, name: model.params[name] * mask},
                           extra_tensors={"masks": {name: mask}})
    trained, _ = train(masked, stream, opts, progress=False)
    assert np.all(trained.params[name][~mask] == 0) and np.any(trained.params[name][mask] != 0)



def test_a_diverging_run_stops_before_writing_a_nan_checkpoint(tmp_path):
    """lr = 1e38 is finite, so it passes the option checks, but the first AdamW update
    (η·m̂/(√v̂+ε) with 1/(1−β₁) = 10) overflows float32: the loss of that step was still
    finite, and the checkpoint at its end must not be written with NaN/∞ weights."""
    model = tiny_model("llama")
    stream = np.arange(200, dtype=np.int32) % 16
    opts = TrainOptions(steps=1, batch_size=2, seq_len=8, lr=1e38, min_lr=0.0, warmup=0,
                        weight_decay=0.0, eval_every=0)
    with pytest.raises(NumericalError, match="non-finite"):
        train(model, stream, opts, out=tmp_path, progress=False)
    assert not (tmp_path / "model.safetensors").exists()
    assert not (tmp_path / "trainer_state.safetensors").exists()


@pytest.mark.parametrize("field, value", [("lr", math.inf), ("lr", math.nan),
                                          ("min_lr", math.nan), ("weight_decay", math.nan),
                                          ("weight_decay", math.inf), ("beta2", 1.0),
                                          ("eps", math.nan), ("clip", math.nan),
                                          ("clip", math.inf), ("seed", -1)])
def test_options_refuse_non_finite_numbers(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", " ") if field == "weight_decay"
                       else field):
        dataclasses.replace(TrainOptions(), **{field: value}).validate()



@pytest.mark.parametrize("flags", [["--weight-decay", "nan"], ["--clip", "nan"],
                                   ["--lr", "inf"], ["--min-lr", "nan"]])
def test_cli_train_refuses_non_finite_numbers_before_any_work(tmp_path, capsys, flags):
    """--weight-decay nan used to train to a NaN checkpoint (exit 0); --clip nan silently
    switched clipping off."""
    from minislm.cli import main
    (tmp_path / "t.txt").write_text("\n".join(f"line {i} of the text" for i in range(200)))
    out = tmp_path / "run"
    assert main(["train", "--init", "llama", "--data", str(tmp_path / "t.txt"), "--vocab-size",
                 "300", "--d-model", "16", "--n-layer", "1", "--n-head", "2", "--steps", "2",
                 "--batch-size", "2", "--seq-len", "8", "--out", str(out), "--no-progress",
                 *flags]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("minislm: error:") and flags[0][2:].split("-")[-1] in last, last
    assert not (out / "model.safetensors").exists()


def test_training_memory_preflight_refuses_before_any_step(monkeypatch):
    """No step runs when the optimiser state plus the activations kept for the backward
    exceed the memory limit (`finetune --batch-size 64 --max-len 256` once peaked at
    861 MB under a 14 MB limit)."""
    from minislm import resources
    from minislm.errors import ResourceError
    from minislm.train import trainer
    model = tiny_model("gpt2")
    stream = np.arange(5000, dtype=np.int32) % 16
    opts = TrainOptions(steps=2, batch_size=64, seq_len=32, warmup=1, eval_every=0)
    params = {k: v for k, v in model.params.items()}
    need = resources.check_training(model, 64, 32, params)
    optimiser, activations = resources.training_bytes(model.config, 64, 32,
                                                      sum(v.size for v in params.values()))
    assert need == optimiser + activations >= 2 * 64 * 2 * 32 * 32 * 4   # L·B·H·T·T probabilities
    calls = []
    monkeypatch.setattr(trainer, "loss_and_grads", lambda *a, **k: calls.append(1))
    monkeypatch.setenv("MINISLM_MEMORY_LIMIT", str(need - 1))
    with pytest.raises(ResourceError, match="batches of 64 × 32 tokens"):
        train(model, stream, opts, progress=False)
    assert calls == []


def test_cli_train_on_a_text_file(tmp_path, capsys):
    from minislm.cli import main
    text = "\n".join(f"def f{i}(x): return x + {i}  # adds {i}" for i in range(300))
    (tmp_path / "code.txt").write_text(text)
    out = tmp_path / "run"
    argv = ["train", "--init", "llama", "--data", str(tmp_path / "code.txt"), "--vocab-size",
            "300", "--d-model", "16", "--n-layer", "1", "--n-head", "2", "--max-position", "32",
            "--steps", "4", "--batch-size", "2", "--seq-len", "16", "--warmup", "1",
            "--eval-tokens", "64", "--out", str(out), "--no-progress", "--sample-prompt", "def"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "validation perplexity" in printed and "unigram model" in printed
    model = minislm.load(out)
    assert model.config.vocab_size == 300 and model.tokenizer is not None
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["unigram_perplexity"] > 1
    assert main(argv[:-2] + ["--steps", "6", "--resume", "--sample-prompt", "def"]) == 0
    assert json.loads((out / "history.json").read_text())[-1]["step"] == 6
    assert main(["train", "--init", "llama", "--data", str(tmp_path / "code.txt"),
                 "--seq-len", "64", "--max-position", "32", "--out", str(out / "x")]) == 2


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_shipped_models_load_in_both_and_beat_unigram(name):
    from pathlib import Path
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = Path(__file__).resolve().parents[1] / "weights" / name
    model = minislm.load(folder)
    assert 1e6 <= model.num_params() <= 5e6 and model.tokenizer is not None
    ids = np.array([model.tokenizer.encode("Return the sum of the items of an iterable.").ids])
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(minislm.forward(model, ids), ref, atol=1e-4, rtol=1e-4)
    summary = json.loads((folder / "train_summary.json").read_text())
    assert summary["validation_perplexity"] < 0.5 * summary["unigram_perplexity"]
    if model.config.family == "llama":
        assert model.config.n_kv_head < model.config.n_head   # GQA
