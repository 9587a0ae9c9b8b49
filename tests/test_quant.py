"""Round-to-nearest quantizers and bit packing."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minislm.errors import InputError, NumericalError
from minislm.model.pack import pack_bits, packed_nbytes, packed_row_bytes, unpack_bits, \
    unpack_float
from minislm.quant.rtn import PER_CHANNEL, PER_TENSOR, dequantize, group_bounds, quantize_rtn


def _weights(seed, out, n_in, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((out, n_in)) * scale).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([2, 3, 4, 8]),
       group_size=st.sampled_from([PER_TENSOR, PER_CHANNEL, 8, 16, 24]),
       sym=st.booleans(), out=st.integers(1, 9), n_in=st.integers(1, 50))
def test_rtn_error_at_most_half_a_step(seed, bits, group_size, sym, out, n_in):
    W = _weights(seed, out, n_in, scale=10.0 ** (seed % 5 - 2))
    qm = quantize_rtn(W, bits, group_size, sym)
    assert qm.q.dtype == np.uint8 and qm.q.max() < 2 ** bits
    assert qm.scales.dtype == np.float16
    W_hat = qm.dequantize()
    assert W_hat.dtype == np.float32 and W_hat.shape == W.shape
    # the step of each weight's group, broadcast to [out, in]
    steps = np.empty_like(W)
    for gi, (a, b) in enumerate(group_bounds(n_in, group_size)):
        steps[:, a:b] = qm.scales[:, gi:gi + 1].astype(np.float32)
    err = np.abs(W - W_hat)
    assert np.all(err <= 0.5 * steps * (1 + 1e-3) + 1e-30)
    assert qm.max_abs_error == pytest.approx(float(err.max()))
    assert qm.mse == pytest.approx(float(np.mean(err * err)), rel=1e-5)


def test_rtn_grid_matches_the_definition():
    W = np.array([[-1.0, -0.25, 0.0, 0.5, 2.0]], dtype=np.float32)
    qm = quantize_rtn(W, bits=2, group_size=PER_CHANNEL, sym=False)
    # asymmetric: s = (2 − (−1)) / 3 = 1, z = round(1) = 1
    assert float(qm.scales[0, 0]) == 1.0 and int(qm.zeros[0, 0]) == 1
    np.testing.assert_array_equal(qm.q[0], [0, 1, 1, 1, 3])  # round(-0.25)=−0, round(0.5)=0 (even)
    qs = quantize_rtn(W, bits=8, group_size=PER_TENSOR, sym=True)
    assert int(qs.zeros[0, 0]) == 128
    assert float(qs.scales[0, 0]) == pytest.approx(4.0 / 255, rel=1e-3)


def test_per_tensor_int8_one_layer_is_accurate():
    """The on-device report's experiment: INT8 per tensor on one FC layer loses ≪ 1 %."""
    rng = np.random.default_rng(0)
    W = _weights(1, 10, 64, 0.2)
    x = rng.standard_normal((2000, 64)).astype(np.float32)
    y, y_hat = x @ W.T, x @ quantize_rtn(W, 8, PER_TENSOR, sym=True).dequantize().T
    agree = np.mean(y.argmax(1) == y_hat.argmax(1))
    assert agree > 0.99
    assert np.linalg.norm(y - y_hat) / np.linalg.norm(y) < 0.01


def test_smaller_groups_and_more_bits_reduce_error():
    W = _weights(2, 64, 256)
    mse = {g: quantize_rtn(W, 4, g).mse for g in (PER_TENSOR, PER_CHANNEL, 128, 32)}
    assert mse[PER_TENSOR] > mse[PER_CHANNEL] > mse[128] > mse[32]
    by_bits = [quantize_rtn(W, b, 128).mse for b in (2, 3, 4, 8)]
    assert by_bits == sorted(by_bits, reverse=True)


def test_rtn_rejects_bad_input():
    with pytest.raises(InputError):
        quantize_rtn(np.zeros((2, 4), np.float32), bits=9)
    with pytest.raises(InputError):
        quantize_rtn(np.zeros(4, np.float32))
    with pytest.raises(NumericalError):
        quantize_rtn(np.array([[np.nan, 1.0]], np.float32))


def test_all_zero_rows_dequantize_to_zero():
    W = np.zeros((3, 8), np.float32)
    for sym in (True, False):
        qm = quantize_rtn(W, 4, 4, sym)
        assert np.all(qm.dequantize() == 0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), bits=st.integers(1, 8), rows=st.integers(1, 5),
       n=st.integers(1, 70))
def test_pack_roundtrip_and_exact_bytes(seed, bits, rows, n):
    q = np.random.default_rng(seed).integers(0, 2 ** bits, (rows, n)).astype(np.uint8)
    packed = pack_bits(q, bits)
    assert packed.dtype == np.uint8
    assert packed.shape == (rows, (n * bits + 7) // 8) == (rows, packed_row_bytes(n, bits))
    assert packed.nbytes == packed_nbytes((rows, n), bits)
    np.testing.assert_array_equal(unpack_bits(packed, bits, n), q)
    as_float = unpack_float(packed, bits, n)             # table lookup for 2, 4, 8 bits
    assert as_float.dtype == np.float32 and as_float.flags.c_contiguous
    np.testing.assert_array_equal(as_float, q)


def test_two_nibbles_per_byte_layout():
    q = np.array([[1, 2, 3, 4, 15]], dtype=np.uint8)
    np.testing.assert_array_equal(pack_bits(q, 4), [[0x21, 0x43, 0x0F]])
    # 3 bits: a little-endian bit stream, 8 codes in 3 bytes
    q3 = np.arange(8, dtype=np.uint8)[None]
    stream = sum(int(v) << (3 * j) for j, v in enumerate(q3[0]))
    np.testing.assert_array_equal(pack_bits(q3, 3)[0], list(stream.to_bytes(3, "little")))


def test_pack_rejects_codes_that_do_not_fit():
    with pytest.raises(InputError):
        pack_bits(np.array([[16]], np.uint8), 4)
    with pytest.raises(InputError):
        unpack_bits(np.zeros((1, 3), np.uint8), 4, 4)
    with pytest.raises(InputError):
        unpack_float(np.zeros((1, 3), np.uint8), 4, 4)


def test_dequantize_accepts_ragged_last_group():
    W = _weights(3, 4, 10)
    qm = quantize_rtn(W, 4, 4)
    assert qm.scales.shape == (4, 3)
    np.testing.assert_array_equal(dequantize(qm.q, qm.scales, qm.zeros, 4), qm.dequantize())


def test_int8_linear_is_exact_integer_arithmetic():
    from minislm.quant.int8 import int8_linear, quantize_activations_int8, quantize_weight_int8
    rng = np.random.default_rng(0)
    W = rng.standard_normal((16, 64)).astype(np.float32)
    x = rng.standard_normal((2, 5, 64)).astype(np.float32)
    q_w, s_w = quantize_weight_int8(W)
    assert q_w.dtype == np.int8 and s_w.dtype == np.float32
    np.testing.assert_allclose(q_w * s_w[:, None], quantize_rtn(W, 8, PER_CHANNEL, True)
                               .dequantize(), rtol=1e-6, atol=1e-7)
    y = int8_linear(x, q_w, s_w)
    assert y.shape == (2, 5, 16) and y.dtype == np.float32
    q_x, s_x = quantize_activations_int8(x.reshape(-1, 64))
    exact = (q_x.astype(np.float64) * s_x[:, None]) @ (q_w.astype(np.float64) * s_w[:, None]).T
    np.testing.assert_allclose(y.reshape(-1, 16), exact, rtol=1e-5, atol=1e-5)
    ref = x @ W.T
    assert np.abs(y - ref).max() < 0.02 * np.abs(ref).max()
