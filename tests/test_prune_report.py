"""Sparsity report: counts and the dense / CSR / N:M byte formulas."""
from __future__ import annotations

import numpy as np

import minislm
from minislm.prune.magnitude import magnitude_prune
from minislm.prune.report import csr_bytes, detect_nm, format_report, nm_bytes, \
    sparsity_report, tensor_report
from minislm.prune.width import width_trim

from conftest import build_hf_model, save_hf_model


def test_byte_formulas():
    W = np.zeros((4, 8), dtype=np.float32)
    W[:, ::2] = 1.0                                     # 2:4 (and 1:2, 4:8 …), 16 non-zeros
    r = tensor_report("w", W)
    assert (r.params, r.zeros, r.sparsity) == (32, 16, 0.5)
    assert r.dense_bytes == 128
    assert r.csr_bytes == csr_bytes(W, 4) == 16 * (4 + 4) + 5 * 4
    assert r.nm == (1, 2) and r.nm_bytes == nm_bytes(32, 1, 2, 4) == 16 * 4 + 2
    assert nm_bytes(32, 2, 4, 4) == 16 * 4 + 4      # 2 bits per kept value
    assert detect_nm(np.ones((2, 8), np.float32), 4) == (None, None)
    assert r.best_bytes == r.nm_bytes


def test_csr_only_pays_off_below_half_density_in_fp32():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((64, 64)).astype(np.float32)
    for density, cheaper in ((0.6, False), (0.4, True)):
        V = np.where(rng.random(W.shape) < density, W, 0).astype(np.float32)
        r = tensor_report("w", V)
        assert (r.csr_bytes < r.dense_bytes) == cheaper


def test_model_report(tmp_path):
    model = minislm.load(save_hf_model(build_hf_model("llama", n_layer=2), tmp_path / "m"))
    dense = sparsity_report(model)
    assert dense["zeros"] == 0 and dense["params"] == model.num_params()
    assert dense["dense_bytes"] == dense["sparse_bytes"] == 4 * model.num_params()
    pruned = sparsity_report(magnitude_prune(model, nm="2:4"))
    assert pruned["zeros"] == pruned["linear_params"] // 2
    assert pruned["dense_bytes"] == dense["dense_bytes"]           # zeros still stored
    assert pruned["sparse_bytes"] < pruned["dense_bytes"]
    assert all(r.nm == (2, 4) or r.nm == (1, 2) for r in pruned["layers"])
    trimmed = width_trim(model, np.random.default_rng(0).integers(0, 101, (2, 8)), ffn=24)
    assert sparsity_report(trimmed)["dense_bytes"] < dense["dense_bytes"]
    text = format_report(pruned)
    assert "of dense" in text and "model.layers.0.mlp.down_proj.weight" in text
