"""GPTQ, EoRA and AWQ on single matrices."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minislm.errors import InputError
from minislm.quant.awq import awq_quantize
from minislm.quant.eora import eora
from minislm.quant.gptq import gptq_quantize
from minislm.quant.rtn import PER_CHANNEL, dequantize_codes, find_params, output_error, \
    quantize_codes, quantize_rtn


def _correlated(seed, n_tokens, n_in, out):
    """Inputs with strongly correlated channels (as LLM activations are) and weights."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((n_in, n_in)) / np.sqrt(n_in)
    X = rng.standard_normal((n_tokens, n_in)) @ mix + 0.2 * rng.standard_normal((n_tokens, n_in))
    X *= rng.uniform(0.2, 3.0, n_in)                       # a few loud channels
    W = rng.standard_normal((out, n_in))
    return X.astype(np.float32), W.astype(np.float32)


def _hessian(X):
    """H = 2 X Xᵀ / n for X given as rows [n, in] (calibration.Stats.hessian does it streamed)."""
    X = X.astype(np.float64)
    return 2.0 * X.T @ X / len(X)


def _naive_obs(W, H, bits, sym, damp=0.01):
    """Eq. 3.7/3.8 literally: quantize column i, update the rest with the full
    inverse Hessian, then drop i from it — no blocks, no Cholesky."""
    W = W.astype(np.float64).copy()
    Hd = H + damp * np.mean(np.diag(H)) * np.eye(len(H))
    Hinv = np.linalg.inv(Hd)
    s, z = find_params(W.astype(np.float32), bits, sym)
    Q = np.zeros(W.shape, np.uint8)
    for i in range(W.shape[1]):
        q = quantize_codes(W[:, i:i + 1].astype(np.float32), s, z, bits)
        Q[:, i:i + 1] = q
        err = (W[:, i] - dequantize_codes(q, s, z)[:, 0]) / Hinv[i, i]
        W[:, i:] -= np.outer(err, Hinv[i, i:])
        Hinv -= np.outer(Hinv[:, i], Hinv[i, :]) / Hinv[i, i]
    return Q


def test_lazy_cholesky_sweep_equals_naive_obs_updates():
    X, W = _correlated(1, 400, 40, 6)
    H = _hessian(X)
    res = gptq_quantize(W, H, bits=3, group_size=PER_CHANNEL, sym=False, block_size=16)
    Q_ref = _naive_obs(W, H, 3, False)
    # identical decisions except where float round-off flips an exact tie
    assert np.mean(res.quantized.q == Q_ref) > 0.99


def _reference_gptq_torch(W, H, bits, groupsize, sym, blocksize=128, percdamp=0.01,
                          actorder=False, static_groups=False):
    """GPTQ.fasterquant of IST-DASLab's gptq.py (as GPTQModel runs it), ported line by line
    to torch from the paper's Algorithm 1 and references.md. Returns the codes [out, in].

    Two deliberate departures, both minislm storage conventions outside the loop under
    test: the scale is rounded *up* to float16 before use (minislm stores float16 scales
    and quantizes with exactly those), and the Cholesky factor of H⁻¹ is computed in
    float64 and cast to float32 (the loop itself runs in float32, as the reference's),
    so the comparison is about the loop's decisions and not about factorisation round-off.
    """
    torch = pytest.importorskip("torch")
    maxq = 2 ** bits - 1

    def find_params(x):                                   # Quantizer.find_params(weight=True)
        zero = torch.zeros(x.shape[0])
        xmin = torch.minimum(x.min(1)[0], zero)
        xmax = torch.maximum(x.max(1)[0], zero)
        if sym:
            xmax = torch.maximum(torch.abs(xmin), xmax)
            xmin = torch.where(xmin < 0, -xmax, xmin)
        scale = (xmax - xmin) / maxq
        s16 = scale.half()                                # float16, rounded up (see above)
        s16 = torch.where(s16.float() < scale, torch.nextafter(s16, torch.full_like(s16, 65504)),
                          s16)
        scale = s16.float()
        zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
        return scale[:, None], zero[:, None]

    def quantize(x, scale, zero):                         # quant.quantize, codes kept
        q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
        return scale * (q - zero), q

    W = torch.tensor(W, dtype=torch.float32).clone()
    H = torch.tensor(H, dtype=torch.float64).clone()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        groups = [find_params(W[:, i:i + groupsize]) for i in range(0, columns, groupsize)]
    perm = torch.arange(columns)
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True)
        W, H = W[:, perm], H[perm][:, perm]
    invperm = torch.argsort(perm)
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True).float()

    codes = torch.zeros_like(W)
    scale, zero = find_params(W)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        scale, zero = find_params(W[:, (i1 + i):(i1 + i + groupsize)])
                else:
                    scale, zero = groups[int(perm[i1 + i]) // groupsize]
            q, code = quantize(w.unsqueeze(1), scale, zero)
            codes[:, i1 + i] = code.flatten()
            err1 = (w - q.flatten()) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return codes[:, invperm].numpy().astype(np.uint8)


@pytest.mark.parametrize("group_size, sym, act_order", [
    (16, False, False), (32, True, False), (64, False, False), (128, False, False),
    (PER_CHANNEL, False, False), (32, False, True), (64, True, True)])
def test_gptq_codes_equal_a_torch_port_of_the_reference_loop(group_size, sym, act_order):
    """Issue 13 item 13: bit-exact codes, also when a group starts inside a lazy block
    (g < 128): its grid is computed from W before the block's own updates, as the
    reference does. act-order uses the reference's static groups."""
    X, W = _correlated(11, 600, 320, 24)             # 320 columns: 2½ lazy blocks of 128
    X[:, 7] = 0.0                                    # a dead input
    H = _hessian(X)
    res = gptq_quantize(W, H, 4, group_size, sym, act_order=act_order)
    ref = _reference_gptq_torch(W, H, 4, group_size, sym, actorder=act_order,
                                static_groups=act_order)
    mismatch = np.mean(res.quantized.q != ref)
    assert mismatch == 0.0, f"{mismatch:.2%} of the codes differ from the reference loop"


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([3, 4]),
       group_size=st.sampled_from([PER_CHANNEL, 16, 32]), sym=st.booleans(),
       act_order=st.booleans())
def test_gptq_error_at_most_rtn_on_correlated_inputs(seed, bits, group_size, sym, act_order):
    X, W = _correlated(seed, 512, 64, 24)
    H = _hessian(X)
    res = gptq_quantize(W, H, bits, group_size, sym, act_order=act_order, block_size=32)
    rtn = quantize_rtn(W, bits, group_size, sym)
    assert res.error_rtn == pytest.approx(output_error(W, rtn.dequantize(), H))
    assert res.error_gptq <= res.error_rtn
    # the reported error is the real ‖WX − ŴX‖²/n
    W_hat = res.quantized.dequantize()
    direct = np.sum(((X.astype(np.float64) @ (W - W_hat).T.astype(np.float64)) ** 2)) / len(X)
    assert res.error_gptq == pytest.approx(direct, rel=1e-4)
    assert W_hat.dtype == np.float32 and res.quantized.q.max() < 2 ** bits


def test_gptq_does_not_modify_inputs_and_handles_dead_columns():
    X, W = _correlated(3, 200, 32, 8)
    X[:, 5] = 0.0
    H = _hessian(X)
    W0, H0 = W.copy(), H.copy()
    res = gptq_quantize(W, H, 4, 16)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(H, H0)
    assert np.all(np.isfinite(res.quantized.dequantize()))


def test_damping_is_raised_when_the_hessian_is_singular():
    X, W = _correlated(7, 40, 8, 4)
    H = _hessian(X[:, :1] @ np.ones((1, 8), np.float32))    # rank one
    res = gptq_quantize(W, H, 4, PER_CHANNEL, damp=0.0)
    assert res.damp > 0 and np.all(np.isfinite(res.quantized.dequantize()))


def test_act_order_static_groups_keep_natural_layout():
    X, W = _correlated(4, 300, 64, 8)
    H = _hessian(X)
    res = gptq_quantize(W, H, 4, 16, act_order=True)
    static = gptq_quantize(W, H, 4, 16, static_groups=True)
    # static groups: the grid is RTN's grid from the original W
    rtn = quantize_rtn(W, 4, 16)
    np.testing.assert_array_equal(res.quantized.scales, rtn.scales)
    np.testing.assert_array_equal(static.quantized.zeros, rtn.zeros)
    assert res.error_gptq < res.error_rtn


@pytest.mark.parametrize("group_size, act_order", [(16, False), (64, False), (PER_CHANNEL, False),
                                                  (16, True)])
def test_gptq_keeps_pruned_weights_zero(group_size, act_order):
    """Issue 13 item 7: GPTQ's error feedback must not refill pruned weights. On a 2:4-pruned
    W every pruned entry dequantizes to exactly 0 (the 2:4 pattern holds), and the pruned
    entries' error still goes to the kept weights (GPTQ beats RTN of the pruned W)."""
    from minislm.prune.masks import nm_mask, zeros_per_group
    X, W = _correlated(8, 600, 128, 32)
    keep = nm_mask(np.abs(W), 2, 4)
    W = np.where(keep, W, np.float32(0.0))
    H = _hessian(X)
    res = gptq_quantize(W, H, 3, group_size, act_order=act_order, block_size=32)
    W_hat = res.quantized.dequantize()
    assert np.count_nonzero(W_hat[~keep]) == 0
    assert zeros_per_group((W_hat != 0).astype(np.uint8), 4).min() >= 2
    assert np.count_nonzero(W_hat) <= np.count_nonzero(W)
    rtn = quantize_rtn(W, 3, group_size)
    assert res.error_rtn == pytest.approx(output_error(W, rtn.dequantize(), H))
    assert res.error_gptq < 0.9 * res.error_rtn
    # an explicit mask: weights marked pruned are zero even when W is not
    dense = _correlated(8, 600, 128, 32)[1]
    explicit = gptq_quantize(dense, H, 3, group_size, act_order=act_order, keep=keep)
    assert np.count_nonzero(explicit.quantized.dequantize()[~keep]) == 0
    with pytest.raises(InputError, match="keep mask"):
        gptq_quantize(W, H, 3, group_size, keep=keep[:, :64])


def test_eora_beats_plain_svd_and_reduces_error():
    X, W = _correlated(5, 600, 48, 32)
    H = _hessian(X)
    W_hat = quantize_rtn(W, 3, 16).dequantize()
    for rank in (1, 4, 16):
        r = eora(W, W_hat, H, rank)
        assert r.A.shape == (rank, 48) and r.B.shape == (32, rank) and r.A.dtype == np.float32
        assert r.error_eora <= r.error_svd * (1 + 1e-9)
        assert r.error_eora < r.error_before
        assert r.error_eora == pytest.approx(output_error(W, W_hat + r.B @ r.A, H), rel=1e-4)
    full = eora(W, W_hat, H, 32)
    assert full.error_eora < 1e-6 * full.error_before
    with pytest.raises(InputError):
        eora(W, W_hat, H, 0)


def test_awq_never_worse_than_rtn_and_keeps_product():
    X, W = _correlated(6, 500, 64, 16)
    H = _hessian(X)
    x_abs = np.abs(X).mean(0)
    r = awq_quantize(W, H, x_abs, bits=3, group_size=32)
    assert r.error_awq <= r.error_rtn
    assert r.input_scale.shape == (64,) and r.input_scale.dtype == np.float32
    W_hat = r.quantized.dequantize() / r.input_scale
    assert r.error_awq == pytest.approx(output_error(W, W_hat, H), rel=1e-5)


@pytest.mark.parametrize("bits, group_size", [(3, 32), (4, 32), (4, 128), (3, PER_CHANNEL)])
def test_awq_beats_rtn_clearly_on_planted_salient_channels(bits, group_size):
    """Issue 13 item 12: the test above cannot fail (α = 0 is plain RTN). Here 4 of 128 input
    channels carry 30× larger activations, the case AWQ is built for: it must cut the
    output error ‖XWᵀ − XŴᵀ‖²/n, measured directly on X, to less than 40 % of RTN's."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 128)).astype(np.float32)
    X[:, rng.choice(128, 4, replace=False)] *= 30                   # the salient channels
    W = rng.standard_normal((64, 128)).astype(np.float32)
    r = awq_quantize(W, _hessian(X), np.abs(X).mean(0), bits, group_size)
    X64 = X.astype(np.float64)
    direct = lambda W_hat: float(np.sum((X64 @ (W - W_hat).T.astype(np.float64)) ** 2) / len(X))
    error_awq = direct(r.quantized.dequantize() / r.input_scale)
    error_rtn = direct(quantize_rtn(W, bits, group_size).dequantize())
    assert r.alpha > 0 and error_awq < 0.4 * error_rtn, (r.alpha, error_awq / error_rtn)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_gptq_beats_rtn_on_held_out_perplexity_of_the_shipped_models(name):
    """The issue's acceptance: on the trained tiny models, GPTQ (32 × 256 calibration
    tokens of the train split) has a lower perplexity than RTN on the whole corpus test
    split at 4-bit g128, 3-bit g128 and 3-bit per channel (bench/RESULTS.md has the
    margins with bootstrap intervals)."""
    import minislm
    from minislm.calibration import calibration_batches
    from minislm.evaluate.perplexity import default_text, perplexity
    from minislm.quant.model_quant import quantize_model

    from conftest import REPO
    model = minislm.load(REPO / "weights" / name)
    text = default_text("test")
    calib = calibration_batches(model, None, 32, 256, seed=0)
    for bits, g in ((4, 128), (3, 128), (3, PER_CHANNEL)):
        ppl = {}
        for method in ("rtn", "gptq"):
            q, _ = quantize_model(model, method, bits, g, progress=False,
                                  calib_ids=calib if method == "gptq" else None)
            ppl[method] = perplexity(q, text, seqlen=256, progress=False).perplexity
        assert ppl["gptq"] < ppl["rtn"], (name, bits, g, ppl)
