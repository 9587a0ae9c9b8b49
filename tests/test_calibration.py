"""Calibration statistics: streamed sums equal the ones computed from stored activations."""
from __future__ import annotations

import numpy as np
import pytest

import minislm
from minislm import calibration
from minislm.errors import InputError, ResourceError, TokenizerError
from minislm.model import families

from conftest import build_hf_model, save_hf_model, word_tokenizer


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    return {f: minislm.load(save_hf_model(build_hf_model(f, n_layer=2), root / f))
            for f in ("gpt2", "llama")}


def ids(n=6, T=10, V=101, seed=0):
    return np.random.default_rng(seed).integers(0, V, size=(n, T))


def stored_inputs(model, batches):
    """Every linear input, kept whole (what `collect` must avoid doing)."""
    seen = {}
    minislm.forward(model, batches, observer=lambda name, x: seen.setdefault(name, []).append(
        x.reshape(-1, x.shape[-1]).astype(np.float64)))
    return {k: np.concatenate(v) for k, v in seen.items()}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_collect_matches_stored_activations(models, family):
    model = models[family]
    batch = ids()
    got = calibration.collect(model, batch, stats=calibration.STATS, batch_size=4)
    X_all = stored_inputs(model, batch)
    names = [lin.name for lin in families.linear_layers(model.config, model.prefix)]
    assert sorted(got) == sorted(names)
    for name in names:
        X, s = X_all[name], got[name]
        assert s.n == X.shape[0] == batch.size
        np.testing.assert_allclose(s.sum, X.sum(0), rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(s.sq_norm, (X * X).sum(0), rtol=1e-10)
        np.testing.assert_allclose(s.abs_sum, np.abs(X).sum(0), rtol=1e-10)
        # XᵀX of each batch is a float32 GEMM (the model's dtype), summed in float64
        XtX = X.T @ X
        tol = 1e-6 * np.abs(XtX).max()
        assert s.xtx.dtype == np.float64 and s.hessian().dtype == np.float64
        np.testing.assert_allclose(s.xtx, XtX, rtol=1e-5, atol=tol)
        np.testing.assert_allclose(s.hessian(), 2 * XtX / X.shape[0], rtol=1e-5,
                                   atol=2 * tol / X.shape[0])
        assert s.col_norm.dtype == np.float32 and s.mean().dtype == np.float32


def test_float64_model_keeps_float64_hessians(models):
    """A float64 model's XᵀX is a float64 GEMM: equal to the stored-activation sum to 1e-10."""
    model = minislm.load(models["llama"].path, dtype=np.float64)
    batch = ids()
    got = calibration.collect(model, batch, stats=("xtx",), batch_size=4)
    stored = stored_inputs(model, batch)
    assert got
    for name, stats in got.items():
        X = stored[name]
        np.testing.assert_allclose(stats.xtx, X.T @ X, rtol=1e-10, atol=1e-10)


def test_float16_activations_do_not_overflow_xtx():
    """Issue 13 item 10: XᵀX of float16 inputs is accumulated in float32 or wider, not float16
    (whose largest value, 65504, the products of |x| ≈ 20 over 512 rows exceed)."""
    x = (20 * np.random.default_rng(0).standard_normal((512, 64))).astype(np.float16)
    s = calibration.Stats()
    s.update(x, ("xtx", "sq_norm"))
    X = x.astype(np.float64)
    assert np.isfinite(s.xtx).all()
    np.testing.assert_allclose(s.xtx, X.T @ X, rtol=1e-5, atol=1e-5 * np.abs(X.T @ X).max())
    np.testing.assert_allclose(np.diag(s.xtx), s.sq_norm, rtol=1e-6)


def test_llama_q_k_v_share_one_accumulator(models):
    model = models["llama"]
    got = calibration.collect(model, ids(2), stats=("sq_norm",))
    p = "model.layers.0."
    assert got[p + "self_attn.q_proj.weight"] is got[p + "self_attn.v_proj.weight"]
    assert got[p + "mlp.gate_proj.weight"] is got[p + "mlp.up_proj.weight"]
    assert got[p + "mlp.down_proj.weight"] is not got[p + "mlp.up_proj.weight"]


def test_lm_head_on_request_and_errors(models):
    model = models["gpt2"]
    head = families.lm_head_name(model.config, model.prefix)
    got = calibration.collect(model, ids(2), names=[head])
    assert got[head].n == 20 and got[head].sq_norm.shape == (model.config.d_model,)
    with pytest.raises(InputError, match="not linear weights"):
        calibration.collect(model, ids(2), names=["nope.weight"])
    with pytest.raises(InputError, match="unknown calibration statistics"):
        calibration.collect(model, ids(2), stats=("median",))
    with pytest.raises(InputError, match="was not collected"):
        got[head].hessian()
    with pytest.raises(ResourceError, match="MiB"):
        calibration.collect(model, ids(2), stats=("xtx",), max_bytes=1000)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sequential_identity_equals_one_pass(models, family):
    model = models[family]
    batch = ids()
    seen = {}

    def keep(m, i, stats):
        seen.update(stats)
        return m

    out = calibration.sequential(model, batch, keep, stats=("sq_norm", "sum"), batch_size=4)
    assert out is model
    ref = calibration.collect(model, batch, stats=("sq_norm", "sum"))
    assert sorted(seen) == sorted(ref)
    for name in ref:
        np.testing.assert_allclose(seen[name].sq_norm, ref[name].sq_norm, rtol=1e-5)
        np.testing.assert_allclose(seen[name].sum, ref[name].sum, rtol=1e-4, atol=1e-4)


def test_sequential_feeds_transformed_blocks(models):
    """Block 1 must be calibrated on the output of the *new* block 0."""
    model = models["gpt2"]
    batch = ids(2)
    seen = {}

    def zero_block0_mlp(m, i, stats):
        seen.update(stats)
        if i != 0:
            return m
        params = dict(m.params)
        name = families.block_prefix(m.config, m.prefix, 0) + "mlp.c_proj.weight"
        params[name] = np.zeros_like(params[name])
        return m.replace(params=params)

    out = calibration.sequential(model, batch, zero_block0_mlp)
    ref = calibration.collect(out, batch)
    name1 = families.block_prefix(model.config, model.prefix, 1) + "attn.c_attn.weight"
    np.testing.assert_allclose(seen[name1].sq_norm, ref[name1].sq_norm, rtol=1e-5)
    dense = calibration.collect(model, batch)
    assert not np.allclose(dense[name1].sq_norm, ref[name1].sq_norm, rtol=1e-3)


def test_token_windows_seeded():
    stream = np.arange(1000)
    a = calibration.token_windows(stream, 5, 16, seed=3)
    b = calibration.token_windows(stream, 5, 16, seed=3)
    assert a.shape == (5, 16) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.diff(a, axis=1), 1)  # contiguous windows
    assert not np.array_equal(a, calibration.token_windows(stream, 5, 16, seed=4))
    with pytest.raises(InputError, match="fewer than one window"):
        calibration.token_windows(np.arange(10), 2, 16)


def test_calibration_batches_from_text_and_file(models, tmp_path):
    model = models["llama"]
    with pytest.raises(TokenizerError):
        calibration.calibration_batches(model, text="w1 w2", n_samples=2, seqlen=4)
    model = model.replace(tokenizer=word_tokenizer(model.config.vocab_size))
    text = " ".join(f"w{i % 90}" for i in range(300))
    batches = calibration.calibration_batches(model, text=text, n_samples=4, seqlen=8, seed=0)
    assert batches.shape == (4, 8) and batches.max() < model.config.vocab_size
    path = tmp_path / "calib.txt"
    path.write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(
        calibration.calibration_batches(model, path, n_samples=4, seqlen=8, seed=0), batches)
    np.testing.assert_array_equal(
        calibration.calibration_batches(model, str(path), n_samples=4, seqlen=8, seed=0), batches)
    with pytest.raises(InputError, match="max_position"):
        calibration.calibration_batches(model, text=text, n_samples=2, seqlen=10 ** 6)


def test_inverse_hessian_factor():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8))
    X[:, 3] = 0.0                                   # a dead input channel
    H = 2 * X.T @ X / 50
    U, damp = calibration.inverse_hessian_factor(H, damp=0.01)
    Hd = H.copy()
    Hd[3, 3] = 1.0
    Hd += 0.01 * np.mean(np.diag(Hd)) * np.eye(8)
    np.testing.assert_allclose(U.T @ U, np.linalg.inv(Hd), rtol=1e-8, atol=1e-10)
    assert np.allclose(U, np.triu(U))
