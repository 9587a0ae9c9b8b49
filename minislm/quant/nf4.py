"""NF4: the QLoRA paper's 4-bit NormalFloat, in blocks of 64 with double-quantized scales.

Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", §3 (eqs. 4–6) and
Appendix E; the arithmetic is bitsandbytes' `quantize_4bit(quant_type="nf4",
blocksize=64, compress_statistics=True)`, checked against it in tests/test_quant_nf4.py.

The code. 16 values c_0 < … < c_15 in [−1, 1]: quantiles of N(0, 1), so that each
code covers an equal share of a normally distributed block, with an exact 0 (eq. 4
made asymmetric, Appendix E). With Φ⁻¹ the normal quantile and δ = 0.9677083,

    c⁺ = Φ⁻¹(linspace(δ, ½, 9)[:−1])       8 positive values
    c⁻ = −Φ⁻¹(linspace(δ, ½, 8)[:−1])      7 negative values
    c  = sort(c⁺ ∪ c⁻ ∪ {0}) / max          so c_0 = −1, c_7 = 0, c_15 = 1

`NF4_CODE` holds the paper's published float32 values.

Blockwise absmax quantization (eq. 1). The (out, in) weight is read row-major as
n = out·in values w_i, cut into blocks b of B = 64 consecutive values (the last
one may be shorter):

    a_b = max_{i∈b} |w_i|                               float32 absmax of block b
    q_i = argmin_j |w_i / a_b − c_j|                     nearest code (a tie goes to the lower)
    ŵ_i = c_{q_i} · â_b                                  â_b: a_b after double quantization

Double quantization (§3). The absmaxes cost 32/64 = 0.5 bit per weight; they are
quantized again, to 8 bits in blocks β of 256, after removing their mean:

    μ   = mean_b a_b                                    the offset (one float32)
    A_β = max_{b∈β} |a_b − μ|                           float32, one per 256 absmaxes
    r_b = argmin_j |(a_b − μ) / A_β − d_j|              8-bit code
    â_b = d_{r_b} · A_β + μ

with d bitsandbytes' signed "dynamic" map (`dynamic_map`): 0, 1 and, for
exponents e = 0 … 6, the 2^e midpoints of linspace(0.1, 1, 2^e + 1) times ±10^(e−6),
256 values dense near 0 and spread out near ±1. Memory per weight:
4 + 8/64 + 32/(64·256) ≈ 4.127 bits (the paper's 4.127), against 4.5 for a float32
absmax per 64 weights (`double_quant=False`).

Stored (`minislm.model.nf4.NF4Tensor`, in the model core, on disk as `<m>.qweight`, …):

    qweight        uint8   [⌈n/2⌉]             q_{2k}: high nibble of byte k, q_{2k+1}: low
    absmax_q       uint8   [n_blocks]          r_b                (double_quant)
    absmax_scale   float32 [⌈n_blocks/256⌉]    A_β                (double_quant)
    absmax_offset  float32 [1]                 μ                  (double_quant)
    absmax         float32 [n_blocks]          a_b                (without double_quant)

— the buffers of bitsandbytes' `Params4bit` and its `QuantState`, byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NumericalError
from ..model.nf4 import (BLOCK, DYNAMIC_MAP, NF4_CODE, SCALE_BLOCK, ZERO_CODE, NF4Tensor,
                         check_block_size)


def nearest_code(x: np.ndarray, code: np.ndarray) -> np.ndarray:
    """argmin_j |x − code_j| as uint8 for x in [−1, 1] and a sorted code: a search among
    the midpoints between neighbouring codes (a value on a midpoint takes the lower code,
    as bitsandbytes' `torch.bucketize` does)."""
    midpoints = (code[:-1] + code[1:]) / np.float32(2)                  # [len(code) − 1]
    return np.searchsorted(midpoints, x, side="left").astype(np.uint8)


def blockwise_absmax(x: np.ndarray, block: int) -> np.ndarray:
    """a_b = max |x_i| over consecutive blocks of `block` values of the flat x (float32)."""
    n_full = x.size // block * block
    a = np.abs(x[:n_full]).reshape(-1, block).max(axis=1)                # [full blocks]
    if n_full < x.size:
        a = np.append(a, np.abs(x[n_full:]).max())
    return a.astype(np.float32, copy=False)


def quantize_blockwise(x: np.ndarray, code: np.ndarray, block: int):
    """(codes uint8 [n], absmax float32 [n_blocks]) of the flat float32 x:
    q_i = nearest_code(x_i / a_b) with a_b the absmax of x_i's block.

    As bitsandbytes: x · (1 / max(a_b, 10⁻³⁸)) clipped to [−1, 1] (a true division in a
    short last block), so an all-zero block gets the code of 0.
    """
    a = blockwise_absmax(x, block)                                      # [n_blocks]
    safe = np.maximum(a, np.float32(1e-38))
    n_full = x.size // block * block
    scaled = np.empty_like(x)                                           # x / a_b, [n]
    inv = np.float32(1.0) / safe[:n_full // block, None]                # [full blocks, 1]
    scaled[:n_full] = (x[:n_full].reshape(-1, block) * inv).reshape(-1)
    scaled[n_full:] = x[n_full:] / safe[-1]                # the short last block: divided
    return nearest_code(np.clip(scaled, -1.0, 1.0), code), a


def double_quantize(absmax: np.ndarray):
    """(r uint8 [n_blocks], A float32 [⌈n_blocks/256⌉], μ float32 [1]) of the absmaxes:
    r = 8-bit dynamic-map codes of a − μ in blocks of 256, A their blocks' absmax."""
    mu = np.asarray([absmax.mean(dtype=np.float32)], dtype=np.float32)
    r, A = quantize_blockwise(absmax - mu, DYNAMIC_MAP, SCALE_BLOCK)
    return r, A, mu


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """4-bit codes [n] -> bytes [⌈n/2⌉]: q_{2k} in the high nibble, q_{2k+1} in the low.
    An odd n is padded with the code of 0.0 (bitsandbytes pads the weights with a 0)."""
    if q.size % 2:
        q = np.append(q, ZERO_CODE)
    return (q[0::2] << np.uint8(4)) | q[1::2]




@dataclass(frozen=True)
class NF4Result:
    """The NF4 tensor and its error: max |w − ŵ| and mean (w − ŵ)²."""
    tensor: NF4Tensor
    max_abs_error: float         # max |w − ŵ|
    mse: float                   # mean (w − ŵ)²


def quantize_nf4(W: np.ndarray, block_size: int = BLOCK, double_quant: bool = True,
                 orientation: str = "out_in") -> NF4Result:
    """NF4 of W [out, in] (flattened row-major into blocks of `block_size`); returns the
    tensor and its error. `orientation` is the checkpoint layout `dequantize` returns."""
    if W.ndim != 2:
        raise InputError(f"quantize_nf4 expects a 2-D weight (out, in), found shape {W.shape}")
    check_block_size(block_size)
    W = np.asarray(W, dtype=np.float32)
    if not np.all(np.isfinite(W)):
        raise NumericalError("quantize_nf4: the weight contains NaN or Inf")
    n_out, n_in = W.shape
    q, absmax = quantize_blockwise(W.reshape(-1), NF4_CODE, block_size)   # [n], [n_blocks]
    if double_quant:
        r, A, mu = double_quantize(absmax)
        t = NF4Tensor(pack_nibbles(q), None, r, A, mu, block_size, n_out, n_in, orientation)
    else:
        t = NF4Tensor(pack_nibbles(q), absmax, None, None, None, block_size, n_out, n_in,
                      orientation)
    err = W - t.effective_out_in()
    return NF4Result(t, max_abs_error=float(np.abs(err).max(initial=0.0)),
                     mse=float(np.mean(err * err)) if err.size else 0.0)


