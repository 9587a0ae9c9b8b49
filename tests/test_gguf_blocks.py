"""GGUF block formats: bit-exact with the `gguf` package's reference quantizer."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minislm.errors import InputError
from minislm.quant.gguf_blocks import BLOCK_BYTES, TYPES, dequantize_blocks, quantize_blocks, \
    quantize_with_error

gguf = pytest.importorskip("gguf")


def _data(seed, rows, blocks):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 32 * blocks)) * rng.uniform(1e-3, 30, (rows, 1))
    x[0, :32] = 0.0                                   # all-zero block: d = 0
    if rows > 1:
        x[1, :32] = 0.5                               # constant block
        x[1, 32 * (blocks - 1):] = np.round(x[1, 32 * (blocks - 1):] * 4) / 4   # ties
    return x.astype(np.float32)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 6), blocks=st.integers(1, 4),
       qtype=st.sampled_from(TYPES))
def test_bit_exact_with_gguf_package(seed, rows, blocks, qtype):
    x = _data(seed, rows, blocks)
    ref_type = gguf.GGMLQuantizationType[qtype.upper()]
    ours = quantize_blocks(x, qtype)
    ref = gguf.quants.quantize(x, ref_type)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    assert ours.shape[-1] == blocks * BLOCK_BYTES[qtype]
    np.testing.assert_array_equal(ours, ref)
    x_hat = dequantize_blocks(ours, qtype)
    assert x_hat.dtype == np.float32
    np.testing.assert_array_equal(x_hat, gguf.quants.dequantize(ref, ref_type))


def test_round_half_away_from_zero_in_q8_0():
    x = np.zeros(32, np.float32)
    x[0], x[1], x[2], x[3] = 127.0, 0.5, -0.5, 2.5           # d = 1 exactly
    q = quantize_blocks(x, "q8_0")[2:].view(np.int8)
    assert list(q[:4]) == [127, 1, -1, 3]


def test_error_is_reported_and_small():
    x = _data(7, 4, 8)
    for qtype in TYPES:
        data, max_err = quantize_with_error(x, qtype)
        amax = np.abs(x).reshape(-1, 32).max(1)
        # one step is at most amax/127 (Q8) … (max−min)/15 (Q4_1): error ≤ 2·amax/15 for all
        assert max_err <= float((2 * amax / 15).max()) + 1e-6
        assert data.nbytes == x.size // 32 * BLOCK_BYTES[qtype]


def test_rejects_rows_not_multiple_of_32():
    with pytest.raises(InputError):
        quantize_blocks(np.zeros((2, 40), np.float32), "q4_0")
    with pytest.raises(InputError):
        quantize_blocks(np.zeros((2, 32), np.float32), "q3_k")
