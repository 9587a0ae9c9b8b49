"""Shared fixtures: tiny random checkpoints written by transformers, and data paths.

Checkpoints are built from a config with random weights and `save_pretrained`,
so every equivalence test compares minislm against the real reference on the
same file. Tests needing torch/transformers skip when the reference extra is
absent (CI installs it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import minislm.threads

# The suite runs under the library's own thread policy (minislm/threads.py): the
# cores no other process is using, and 1 thread whenever `minislm.load` reads a tiny
# model. An explicit OPENBLAS_NUM_THREADS / MINISLM_THREADS still wins.
minislm.threads.apply()

# Property tests draw the same examples on every run (CI's clean clone included), so a
# green local run means a green CI run; HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MINISLM_DATA", REPO.parent / "shared" / "data"))


def data_file(relative: str) -> Path:
    """A file under the shared data folder, or skip the test with the reason."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not present (shared data is never committed; set MINISLM_DATA)")
    return path


def llama3_scaling(original: int = 16) -> dict:
    return {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": original}


def hf_config(family: str, **kw):
    """A transformers config for a tiny model (keyword names in minislm's vocabulary)."""
    transformers = pytest.importorskip("transformers")
    C = kw.get("d_model", 32)
    H = kw.get("n_head", 4)
    common = dict(vocab_size=kw.get("vocab_size", 101))
    if family == "gpt2":
        return transformers.GPT2Config(n_embd=C, n_layer=kw.get("n_layer", 2), n_head=H,
                                       n_positions=kw.get("max_position", 64),
                                       n_inner=kw.get("d_ff"), **common)
    if family in ("gemma3", "gemma2"):
        L = kw.get("n_layer", 2)
        gemma = dict(hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                     num_key_value_heads=kw.get("n_kv_head", 1),
                     intermediate_size=kw.get("d_ff", 48),
                     max_position_embeddings=kw.get("max_position", 64),
                     head_dim=kw.get("head_dim", 16), sliding_window=kw.get("sliding_window", 5),
                     layer_types=kw.get("layer_types", ["sliding_attention", "full_attention"]
                                        * (L // 2) + ["sliding_attention"] * (L % 2)),
                     query_pre_attn_scalar=kw.get("query_pre_attn_scalar", 24),
                     tie_word_embeddings=kw.get("tied", True), **common)
        if family == "gemma2":
            return transformers.Gemma2Config(
                **gemma, attn_logit_softcapping=kw.get("attn_softcap", 5.0),
                final_logit_softcapping=kw.get("final_softcap", 3.0),
                rope_parameters={"rope_type": "default",
                                 "rope_theta": kw.get("rope_theta", 10000.0)})
        return transformers.Gemma3TextConfig(**gemma, rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": kw.get("rope_theta", 1e6)},
            "sliding_attention": {"rope_type": "default",
                                  "rope_theta": kw.get("rope_local_theta", 1e4)}})
    return transformers.LlamaConfig(
        hidden_size=C, num_hidden_layers=kw.get("n_layer", 2), num_attention_heads=H,
        num_key_value_heads=kw.get("n_kv_head", 2), intermediate_size=kw.get("d_ff", 48),
        max_position_embeddings=kw.get("max_position", 64),
        head_dim=kw.get("head_dim", C // H),
        rope_scaling=kw.get("rope_scaling", llama3_scaling()),
        rope_theta=kw.get("rope_theta", 10000.0),
        tie_word_embeddings=kw.get("tied", False), **common)


def build_hf_model(family: str, seed: int = 0, dtype=None, **kw):
    """(transformers model, its config) with random weights; biases randomised too."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = hf_config(family, **kw)
    cls = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM,
           "gemma3": transformers.Gemma3ForCausalLM,
           "gemma2": transformers.Gemma2ForCausalLM}[family]
    model = cls(cfg).eval()
    with torch.no_grad():  # default init leaves norms at 1 and biases at 0: perturb them
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    if dtype is not None:
        model = model.to(dtype)
    return model


def save_hf_model(model, path, dtype=None) -> Path:
    """save_pretrained (optionally converting to bf16/fp16 on disk)."""
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(str(path))
    return Path(path)


def hf_logits(model, ids: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def word_tokenizer(V):
    """A whitespace word-level tokenizer over "<unk>", "w0" … "w{V−2}" (ids 0 … V−1)."""
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<unk>"] + [f"w{i}" for i in range(V - 1)]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)},
                                                           unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return tok


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """{'gpt2': folder, 'llama': folder}: tiny random checkpoints written by transformers."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: save_hf_model(build_hf_model(family), root / family)
            for family in ("gpt2", "llama")}


def assert_adapter_grads_equal_over_dense_copy(quantized, loss_atol, rtol):
    """QLoRA's gradients: rank-2 adapters on q/v over a model whose linears are stored
    quantized must get the gradients (and loss) of the same adapters over its dequantized
    copy — the frozen weights' linear_backward carries dx, the codes stay frozen."""
    import dataclasses

    from minislm.adapt import finetune as ft
    from minislm.adapt import lora
    from minislm.model.weights import StoredWeight
    from minislm.train.backward import loss_and_grads
    dense = quantized.replace(params={k: v.dequantize() if isinstance(v, StoredWeight) else v
                                      for k, v in quantized.params.items()})
    ids = np.random.default_rng(0).integers(0, quantized.config.vocab_size, (2, 12))
    results = []
    for model in (quantized, dense):
        adapted = lora.add_lora(model, rank=2, targets=["q_proj", "v_proj"], seed=3)
        adapted = adapted.replace(params={**adapted.params, **{
            name: dataclasses.replace(w, B=np.full_like(w.B, 0.05))     # B ≠ 0, so dA ≠ 0
            for name, w in lora.lora_weights(adapted).items()}})
        results.append(loss_and_grads(adapted, ids, ids, trainable=set()))   # adapters only
    (loss_q, g_q), (loss_d, g_d) = results
    flat_q, flat_d = ft.flat_grads(g_q), ft.flat_grads(g_d)
    assert sorted(flat_q) == sorted(flat_d) and len(flat_q) == 2 * 2 * quantized.config.n_layer
    assert abs(loss_q - loss_d) < loss_atol
    for k in flat_q:
        assert flat_q[k].dtype == np.float32 and np.abs(flat_q[k]).max() > 0
        np.testing.assert_allclose(flat_q[k], flat_d[k], rtol=rtol, atol=1e-6)
