"""Round-to-nearest (RTN) uniform quantization of a weight matrix.

Every quantizer in minislm.quant works on W in the (out, in) layout — one row
per output channel, groups of g consecutive *input* columns sharing a scale —
whatever layout the checkpoint stores (GPT-2 Conv1D weights are transposed by
the caller).

The affine grid with b bits and q_max = 2^b − 1 (thesis eq. 3.5, GPTQ's quantizer):

    q  = clamp(round(w / s) + z, 0, q_max)          integer code, stored in b bits
    ŵ  = s · (q − z)                                 dequantized weight

  asymmetric: x_min = min(w, 0), x_max = max(w, 0)   (the range always holds 0)
              s = (x_max − x_min) / q_max,  z = round(−x_min / s)
  symmetric:  a = max|w|,  s = 2a / q_max,  z = 2^(b−1)   (constant, not stored)

so every w inside the range lands within s/2 of its ŵ. Scales are stored as
float16 (as GPTQ checkpoints do), rounded up so the range still covers every
weight; the codes are computed with the float16-rounded
scale, so ŵ is exactly what a reader of the stored tensors reconstructs.

GGUF grids (`grid="q4_0" | "q4_1" | "q8_0"`, gguf_grid.py): the groups of 32 take
llama.cpp's scale and rounding instead, so the codes are its blocks' codes; Q4_1's
grid stores an fp16 minimum per group (`mins`, ŵ = s · q + lo) instead of z.

Granularity (`group_size`):
    g > 0              groups of g input columns per output row (the last group may be shorter)
    PER_CHANNEL = -1   one (s, z) per output row (GPTQ's "group_size = -1")
    PER_TENSOR  = 0    one (s, z) for the whole matrix (the on-device report's INT8 example)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NumericalError
from ..model.quantized import PER_CHANNEL, PER_TENSOR, group_bounds
from . import gguf_grid

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class QuantizedMatrix:
    """The integer codes and grid of one (out, in) matrix, plus how far ŵ is from w."""
    q: np.ndarray            # uint8 [out, in]      codes in 0 … 2^b − 1
    scales: np.ndarray       # float16 [R, n_groups]   R = out (or 1 per-tensor)
    zeros: np.ndarray        # uint8 [R, n_groups]
    bits: int
    group_size: int
    sym: bool
    max_abs_error: float     # max |w − ŵ|
    mse: float               # mean (w − ŵ)²
    mins: np.ndarray | None = None   # float16 [R, n_groups]: ŵ = s · q + lo (Q4_1's grid)
    grid: str | None = None          # the GGUF grid the codes were chosen on

    def dequantize(self) -> np.ndarray:
        """ŵ = s · (q − z) per group (s · q + lo on a grid with mins), float32 [out, in]."""
        return dequantize(self.q, self.scales, self.zeros, self.group_size, self.mins)


def check_scheme(bits: int, group_size: int, n_in: int | None = None) -> None:
    """Raise InputError unless `bits` is supported and `group_size` is a positive integer, -1 or 0."""
    if bits not in SUPPORTED_BITS:
        raise InputError(f"quantization bits must be one of {SUPPORTED_BITS}, found {bits!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < -1:
        raise InputError(f"group_size must be a positive integer, -1 (per output channel) "
                         f"or 0 (per tensor), found {group_size!r}")


def _float16_ceil(s: np.ndarray) -> np.ndarray:
    """Round s up to float16: the stored scale must cover the full range, or the
    extreme weight would be clipped by more than half a step."""
    s16 = s.astype(np.float16)
    return np.where(s16.astype(np.float32) < s, np.nextafter(s16, np.float16(np.inf)), s16)


def find_params(w: np.ndarray, bits: int, sym: bool, per_tensor: bool = False):
    """Scale s and zero z for each row of w [R, n] (one pair for all rows if per_tensor).

    Returns s float16 [R, 1] and z uint8 [R, 1] (R = 1 when per_tensor). s is never 0:
    an all-zero row gets s = 1 so its codes are z and ŵ = 0 exactly.
    """
    q_max = 2 ** bits - 1
    w = w.astype(np.float32, copy=False)
    if per_tensor:
        w = w.reshape(1, -1)
    x_min = np.minimum(w.min(axis=1, keepdims=True), 0.0)      # [R, 1]
    x_max = np.maximum(w.max(axis=1, keepdims=True), 0.0)      # [R, 1]
    if sym:
        a = np.maximum(-x_min, x_max)
        s = _float16_ceil(2.0 * a / q_max)
        s = np.where(s == 0, np.float16(1.0), s)
        z = np.full(s.shape, 2 ** (bits - 1), dtype=np.uint8)
    else:
        s = _float16_ceil((x_max - x_min) / q_max)
        s = np.where(s == 0, np.float16(1.0), s)
        z = np.clip(np.round(-x_min / s.astype(np.float32)), 0, q_max).astype(np.uint8)
    if not np.all(np.isfinite(s)):
        raise NumericalError(f"quantization scale overflows float16 (|w| up to "
                             f"{float(np.abs(w).max()):.3g}); weights are not finite or too large")
    return s, z


def quantize_codes(w: np.ndarray, s: np.ndarray, z: np.ndarray, bits: int) -> np.ndarray:
    """q = clamp(round(w / s) + z, 0, q_max) as uint8 (s, z broadcast over w's columns)."""
    q = np.round(w / s.astype(np.float32)) + z.astype(np.float32)
    return np.clip(q, 0, 2 ** bits - 1).astype(np.uint8)


def dequantize_codes(q: np.ndarray, s: np.ndarray, z: np.ndarray,
                     lo: np.ndarray | None = None) -> np.ndarray:
    """ŵ = s · (q − z), or s · q + lo with a minimum lo (Q4_1's grid), float32."""
    if lo is not None:
        return s.astype(np.float32) * q.astype(np.float32) + lo.astype(np.float32)
    return s.astype(np.float32) * (q.astype(np.float32) - z.astype(np.float32))


def dequantize(q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group_size: int,
               mins: np.ndarray | None = None) -> np.ndarray:
    """Codes q [out, in] and per-group grid [R, n_groups] back to float32 ŵ [out, in]."""
    n_in = q.shape[1]
    bounds = group_bounds(n_in, group_size)
    W_hat = np.empty(q.shape, dtype=np.float32)
    for gi, (a, b) in enumerate(bounds):
        W_hat[:, a:b] = dequantize_codes(q[:, a:b], scales[:, gi:gi + 1], zeros[:, gi:gi + 1],
                                         None if mins is None else mins[:, gi:gi + 1])
    return W_hat


def _with_error(W, q, scales, zeros, bits, group_size, sym, mins=None, grid=None):
    W_hat = dequantize(q, scales, zeros, group_size, mins)
    err = W - W_hat
    return QuantizedMatrix(q, scales, zeros, bits, group_size, sym,
                           max_abs_error=float(np.abs(err).max(initial=0.0)),
                           mse=float(np.mean(err * err)) if err.size else 0.0,
                           mins=mins, grid=grid)


def quantize_rtn_gguf(W: np.ndarray, grid: str) -> QuantizedMatrix:
    """RTN on a GGUF grid: llama.cpp's quantizer (`quantize_row_*_ref`) for every group of
    32, its codes and fp16 scales (and minimums) kept as minislm's grid."""
    out, n_in = W.shape
    G = n_in // 32
    blocks = W.reshape(out, G, 32)
    s, z, lo16, d, lo = gguf_grid.find_params(blocks, grid)                # [out, G, 1] each
    q = gguf_grid.codes(blocks, d, lo, grid).reshape(out, n_in)
    bits, sym = gguf_grid.GRIDS[grid]
    return _with_error(W, q, s[..., 0], z[..., 0], bits, 32, sym,
                       None if lo16 is None else lo16[..., 0], grid)


def quantize_rtn(W: np.ndarray, bits: int = 4, group_size: int = 128,
                 sym: bool = False, grid: str | None = None) -> QuantizedMatrix:
    """Round-to-nearest quantization of W [out, in]; returns codes, grid and the error.
    grid: a GGUF type whose grid to use (bits, group_size and sym must be its own)."""
    if W.ndim != 2:
        raise InputError(f"quantize_rtn expects a 2-D weight (out, in), found shape {W.shape}")
    check_scheme(bits, group_size)
    W = W.astype(np.float32, copy=False)
    if not np.all(np.isfinite(W)):
        raise NumericalError("quantize_rtn: the weight contains NaN or Inf")
    if grid is not None:
        gguf_grid.check_grid(grid, bits, group_size, sym, W.shape[1])
        return quantize_rtn_gguf(W, grid)
    out, n_in = W.shape
    per_tensor = group_size == PER_TENSOR
    bounds = group_bounds(n_in, group_size)
    R = 1 if per_tensor else out
    scales = np.empty((R, len(bounds)), dtype=np.float16)
    zeros = np.empty((R, len(bounds)), dtype=np.uint8)
    q = np.empty((out, n_in), dtype=np.uint8)
    for gi, (a, b) in enumerate(bounds):
        s, z = find_params(W[:, a:b], bits, sym, per_tensor)          # [R, 1]
        scales[:, gi:gi + 1], zeros[:, gi:gi + 1] = s, z
        q[:, a:b] = quantize_codes(W[:, a:b], s, z, bits)
    return _with_error(W, q, scales, zeros, bits, group_size, sym)


def output_error(W: np.ndarray, W_hat: np.ndarray, H: np.ndarray) -> float:
    """Per-token reconstruction error ‖W X − Ŵ X‖² / n computed from H = 2 X Xᵀ / n.

    With ΔW = W − Ŵ: ‖ΔW X‖²_F / n = tr(ΔW (X Xᵀ / n) ΔWᵀ) = ½ tr(ΔW H ΔWᵀ).
    """
    dW = W.astype(np.float32) - W_hat.astype(np.float32)                 # [out, in]
    # float32 GEMM (2x faster than float64 at 3072²); the sum is taken in float64
    return float(0.5 * np.sum((dW @ H.astype(np.float32)) * dW, dtype=np.float64))
