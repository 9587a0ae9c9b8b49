"""AWQ: activation-aware per-input-channel scaling before round-to-nearest.

Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression
and Acceleration", §3.2. Input channels that carry large activations matter
most; scaling their weight columns up by s_j > 1 before quantization shrinks
their relative rounding error, and dividing the input by s_j keeps the product:

    y = W x = (W diag(s)) (diag(s)⁻¹ x)   ≈   Q(W diag(s)) (x / s)

    s = x̄^α / √(max x̄^α · min x̄^α),   x̄_j = mean |x_j| over calibration tokens
    α* = argmin_{α ∈ {0, 1/n, …, (n−1)/n}} ‖W X − Q(W diag(s)) diag(s)⁻¹ X‖²

α = 0 is plain RTN, so the search never does worse than RTN on the calibration
set. The paper folds 1/s into the previous operator (a norm or linear); minislm
keeps s beside the quantized weight (`input_scale`, one float per input channel)
and divides the input by it in the forward — the same arithmetic, one place for
every family (GPT-2's GELU before `c_proj` could not absorb it anyway).

Two departures from the paper and its reference code (llm-awq), both simplifications:
  * the objective is per linear layer, ‖W X − Ŵ X‖² computed from H, not the output
    of the whole module: llm-awq searches one s for q, k and v together (they
    share the norm the scale is folded into) and scores it on the attention block's
    output, and likewise one s for gate and up on the MLP output. Here each linear
    gets its own α and s (it keeps its own `input_scale`, so nothing forces sharing);
  * there is no clipping search (llm-awq's `auto_clip`, which also shrinks each
    group's range to trade clipping error for rounding error): the grid is RTN's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .rtn import QuantizedMatrix, output_error, quantize_rtn


@dataclass(frozen=True)
class AWQResult:
    """AWQ's codes of W diag(s), the input scales s, the chosen α and the error against plain RTN."""
    quantized: QuantizedMatrix   # RTN codes of W diag(s)
    input_scale: np.ndarray      # s float32 [in]: forward uses x / s
    alpha: float                 # the chosen exponent
    error_awq: float             # ‖W X − Ŵ X‖² / n with the chosen s
    error_rtn: float             # the same for α = 0 (plain RTN)


def awq_quantize(W: np.ndarray, H: np.ndarray, x_abs_mean: np.ndarray, bits: int = 4,
                 group_size: int = 128, sym: bool = False, n_grid: int = 20) -> AWQResult:
    """Search α for W [out, in] given H = 2XXᵀ/n [in, in] and x̄ = mean|x| [in]."""
    if W.ndim != 2 or H.shape != (W.shape[1], W.shape[1]) or x_abs_mean.shape != (W.shape[1],):
        raise InputError(f"awq_quantize: expected W (out, in), H (in, in), x̄ (in,); found "
                         f"{W.shape}, {H.shape}, {x_abs_mean.shape}")
    W = W.astype(np.float32, copy=False)
    x_bar = np.maximum(x_abs_mean.astype(np.float32), np.float32(1e-6))
    best = None
    error_rtn = None
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_bar ** np.float32(alpha)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)                 # [in]
        qm = quantize_rtn(W * s, bits, group_size, sym)
        W_hat = qm.dequantize() / s                                             # [out, in]
        err = output_error(W, W_hat, H)
        if k == 0:
            error_rtn = err
        if best is None or err < best[0]:
            best = (err, alpha, s, qm)
    err, alpha, s, qm = best
    return AWQResult(qm, s, alpha, error_awq=err, error_rtn=error_rtn)
