"""Dynamic INT8 × INT8 matmul with int32 accumulation (W8A8), the integer path of
CPUs and NPUs (Siracusa's N-EUREKA takes 8-bit activations and 2–8-bit weights).

Weights: symmetric per output channel, w ≈ s_w[o] · q_w[o, i], q_w ∈ [−128, 127]
(the 8-bit symmetric grid of rtn.py with the zero point 128 removed).
Activations: quantized on the fly per token (row), symmetric:

    s_x[t] = max_i |x[t, i]| / 127,   q_x[t, i] = round(x[t, i] / s_x[t]) ∈ [−127, 127]
    y[t, o] = s_x[t] · s_w[o] · Σ_i q_x[t, i] · q_w[o, i]          (the sum in int32)

|q_x · q_w| ≤ 127·128 < 2¹⁴, so int32 holds sums over up to 2¹⁷ inputs exactly.

Where it helps and where NumPy cannot show it: on hardware with int8 dot-product
instructions (x86 VNNI, ARM SDOT, NPUs) the int8 product moves 4× fewer bytes and
does 2–4× more multiply-adds per cycle than float32. NumPy has no int8 GEMM: it
must widen both operands to int32 and its integer matmul does not go through
BLAS, so here the integer path is *slower* than float32 (bench/quant_bench.py
measures by how much); the arithmetic — and its error — is what this shows.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .rtn import PER_CHANNEL, quantize_rtn


def quantize_weight_int8(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [out, in] -> (q_w int8 [out, in], s_w float32 [out]) symmetric per output channel."""
    qm = quantize_rtn(W, bits=8, group_size=PER_CHANNEL, sym=True)
    q_w = (qm.q.astype(np.int16) - 128).astype(np.int8)                 # z = 128 removed
    return q_w, qm.scales[:, 0].astype(np.float32)


def quantize_activations_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, in] -> (q_x int8 [N, in], s_x float32 [N]) symmetric per row."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1)
    s_x = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)     # [N]
    q_x = np.clip(np.round(x / s_x[:, None]), -127, 127).astype(np.int8)
    return q_x, s_x


def int8_linear(x: np.ndarray, q_w: np.ndarray, s_w: np.ndarray) -> np.ndarray:
    """y = x Wᵀ computed as s_x s_w (q_x q_wᵀ) with an int32 accumulator; x [..., in]."""
    if x.shape[-1] != q_w.shape[1]:
        raise InputError(f"int8_linear: x has {x.shape[-1]} inputs, the weight {q_w.shape[1]}")
    lead = x.shape[:-1]
    q_x, s_x = quantize_activations_int8(x.reshape(-1, x.shape[-1]))
    acc = q_x.astype(np.int32) @ q_w.T.astype(np.int32)                 # [N, out] int32
    y = acc.astype(np.float32) * s_x[:, None] * s_w[None, :]
    return y.reshape(*lead, q_w.shape[0])
