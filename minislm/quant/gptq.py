"""GPTQ: quantize W column by column, pushing each rounding error onto the
columns not yet quantized, weighted by the inverse Hessian of the layer loss.

Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers" (Algorithm 1); thesis §3.5, eqs. 3.6–3.9.

For one linear layer with weights W [out, in] and calibration inputs X [in, n]:

    argmin_Ŵ ‖W X − Ŵ X‖²₂                          (3.6)
    H = 2 X Xᵀ / n  (+ λ I,  λ = damp · mean diag H)  (3.9)   [in, in]

Quantizing column i to q_i, the optimal update of the remaining columns F is

    δ_F = −(w_i − q_i) / [H_F⁻¹]_ii · (H_F⁻¹)_{i,F}   (3.7)

and H_F⁻¹ loses row and column i (3.8). GPTQ's three tricks:
  1. one fixed column order for all rows (or "act-order": descending diag H);
  2. lazy batches: the updates inside a block of B = 128 columns are applied at
     once to the rest of the matrix (Err · H⁻¹[block, rest]) after the block;
  3. the rows of H⁻¹ needed by the sweep are those of its upper Cholesky factor U
     (H⁻¹ = Uᵀ U), computed once: err_i = (w_i − q_i) / U_ii, δ = err_i · U_{i, i:}.

The grid (s, z) of a group of g columns is computed when the sweep reaches the
group's first column, from W as the reference loop (IST-DASLab gptq.py) reads
it: with the updates of all earlier lazy blocks, but not yet those of the
current block's earlier columns (they live in the block's working copy W1
until the block ends). This matters when g < B and a group starts inside a
block. Computing the grid from W1 instead (the block's own updates included)
was measured and is not better: over 20 random correlated 64×256 matrices its
error ‖WX − ŴX‖² was 0.6 % lower at 4-bit g32 but 1.9 % / 2.7 % higher at 3-bit
g32 / g64, and the perplexities of the tiny models moved by less than 0.3 in
either direction; so only the reference choice is kept. With act-order the
groups are "static" (the reference's `static_groups`): computed up front from
the original W in natural column order, so the stored layout stays the plain
grouped one.

Pruned weights (exact zeros, or the False entries of `keep`) stay exactly zero,
as in SparseGPT's joint sparsify-and-quantize sweep (Frantar & Alistarh 2023,
§3.4): when the sweep reaches column i, a pruned entry gets the code of 0
(q = z, so ŵ = 0) whatever the updates of earlier columns added to it, and
its whole value w becomes error pushed onto the later *kept* weights by the
usual update δ = err_i · U_{i, i:}. Grids are computed from the kept entries
only. Without this, the error feedback refills the pruned positions and breaks
an N:M pattern.

On a GGUF grid (`grid="q4_0" | "q4_1" | "q8_0"`, gguf_grid.py) each group of 32
takes llama.cpp's scale (Q4_0: d = m / −8 with m the signed value of largest
|w|, all 16 levels used) from W as above, each column is rounded as llama.cpp
rounds, and the error fed back is w − ŵ with ŵ from the fp16 scale the file
stores; the result is written into GGUF blocks as it is (`gguf_grid.to_blocks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration import inverse_hessian_factor
from ..errors import InputError, NumericalError
from . import gguf_grid
from .rtn import PER_TENSOR, QuantizedMatrix, check_scheme, dequantize, dequantize_codes, \
    find_params, group_bounds, output_error, quantize_codes, quantize_rtn


@dataclass(frozen=True)
class GPTQResult:
    """GPTQ's codes and grid, its error ‖W X − Ŵ X‖² / n beside RTN's, the damping used."""
    quantized: QuantizedMatrix     # codes, grid and the weight-space error
    error_gptq: float              # ‖W X − Ŵ X‖² / n of GPTQ
    error_rtn: float               # the same for plain round-to-nearest on the same grid
    damp: float                    # the damping fraction that made Cholesky succeed


def gptq_quantize(W: np.ndarray, H: np.ndarray, bits: int = 4, group_size: int = 128,
                  sym: bool = False, damp: float = 0.01, block_size: int = 128,
                  act_order: bool = False, static_groups: bool = False,
                  keep: np.ndarray | None = None, grid: str | None = None) -> GPTQResult:
    """GPTQ of W [out, in] given the Hessian H [in, in] of its calibration inputs.

    keep: bool [out, in], False = a pruned weight that must stay exactly zero
    (default: W != 0, so a pruned model keeps its sparsity pattern).
    grid: "q4_0" | "q4_1" | "q8_0" to sweep on llama.cpp's grid (gguf_grid.py): each
    group's scale as its quantizer computes it, its rounding, fp16 ŵ — the codes and
    scales are then the GGUF file's blocks.
    """
    if W.ndim != 2 or H.shape != (W.shape[1], W.shape[1]):
        raise InputError(f"gptq_quantize: W must be (out, in) and H (in, in); found W {W.shape}, "
                         f"H {H.shape}")
    if keep is not None and np.shape(keep) != W.shape:
        raise InputError(f"gptq_quantize: keep mask {np.shape(keep)} must have W's shape {W.shape}")
    check_scheme(bits, group_size)
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(H))):
        raise NumericalError("gptq_quantize: W or H contains NaN or Inf")
    out, n_in = W.shape
    W0 = W.astype(np.float32, copy=False)                    # the input is never modified
    keep = W0 != 0 if keep is None else np.asarray(keep, dtype=bool)
    sparse = not keep.all()
    if grid is not None:
        gguf_grid.check_grid(grid, bits, group_size, sym, n_in)
        if sparse and grid == "q4_1":
            raise InputError("gptq_quantize: Q4_1's grid (ŵ = d·q + min) has no exact zero, so "
                             "pruned weights cannot stay zero; use grid q4_0 or q8_0")
    W = np.where(keep, W0, np.float32(0.0))                  # a copy, pruned entries zero
    H = H.astype(np.float64, copy=True)
    H_orig = H.copy()

    dead = np.diag(H) == 0                                   # inputs never active
    H[dead, dead] = 1.0
    W[:, dead] = 0.0

    per_tensor = group_size == PER_TENSOR
    bounds = group_bounds(n_in, group_size)
    grouped = len(bounds) > 1
    static = static_groups or act_order
    R = 1 if per_tensor else out
    scales = np.empty((R, len(bounds)), dtype=np.float16)
    zeros = np.empty((R, len(bounds)), dtype=np.uint8)
    mins = np.empty((R, len(bounds)), dtype=np.float16) if grid == "q4_1" else None
    d32, lo32 = np.empty(scales.shape, np.float32), np.empty(scales.shape, np.float32)

    def set_grid(gi, cols):
        """The grid of group gi from its columns: minislm's, or llama.cpp's (stored fp16
        copies in scales/mins, the float32 d and lo it rounds with in d32/lo32)."""
        if grid is None:
            scales[:, gi:gi + 1], zeros[:, gi:gi + 1] = find_params(cols, bits, sym, per_tensor)
            return
        scales[:, gi:gi + 1], zeros[:, gi:gi + 1], lo16, d32[:, gi:gi + 1], lo = \
            gguf_grid.find_params(cols, grid)
        if mins is not None:
            mins[:, gi:gi + 1], lo32[:, gi:gi + 1] = lo16, lo

    def codes(w, gi):
        if grid is None:
            return quantize_codes(w, scales[:, gi:gi + 1], zeros[:, gi:gi + 1], bits)
        return gguf_grid.codes(w, d32[:, gi:gi + 1],
                               None if mins is None else lo32[:, gi:gi + 1], grid)

    if not grouped or static:                                # grid fixed before the sweep
        for gi, (a, b) in enumerate(bounds):
            set_grid(gi, W[:, a:b])
    group_of = np.repeat(np.arange(len(bounds)), [b - a for a, b in bounds])   # [in]

    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(n_in)
    W = W[:, perm]
    keep_perm = keep[:, perm]
    H = H[perm][:, perm]
    U, damp_used = inverse_hessian_factor(H, damp)
    U = U.astype(np.float32)

    Q = np.zeros((out, n_in), dtype=np.uint8)               # codes, permuted order
    for i1 in range(0, n_in, block_size):
        i2 = min(i1 + block_size, n_in)
        W1 = W[:, i1:i2].copy()                              # [out, B] being swept
        Err1 = np.zeros_like(W1)                             # [out, B] scaled errors
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = perm[i1 + i]
            gi = group_of[col]
            if grouped and not static and col == bounds[gi][0]:
                a, b = bounds[gi]                            # group = columns a … b−1 (natural)
                # W, not W1: the group's columns as they were when this lazy block began;
                # pruned entries (which received updates) will be 0, not in the range
                cols = np.where(keep[:, a:b], W[:, a:b], np.float32(0.0)) if sparse else W[:, a:b]
                set_grid(gi, cols)
            s, z = scales[:, gi:gi + 1], zeros[:, gi:gi + 1]
            w = W1[:, i:i + 1]                                              # [out, 1]
            q = codes(w, gi)                                                # [out, 1]
            if sparse:                                 # pruned: code z, so ŵ = s·(z − z) = 0
                q = np.where(keep_perm[:, i1 + i:i1 + i + 1], q, z)
            w_hat = dequantize_codes(q, s, z, None if mins is None else mins[:, gi:gi + 1])
            err = (w - w_hat) / U1[i, i]                                    # [out, 1]
            W1[:, i:] -= err @ U1[i:i + 1, i:]                              # δ within the block
            Err1[:, i:i + 1] = err
            Q[:, i1 + i:i1 + i + 1] = q
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]                                   # lazy batch update

    Q = Q[:, np.argsort(perm)]                                              # natural order
    W_hat = dequantize(Q, scales, zeros, group_size, mins)
    err = W0 - W_hat
    quantized = QuantizedMatrix(Q, scales, zeros, bits, group_size, sym,
                                max_abs_error=float(np.abs(err).max(initial=0.0)),
                                mse=float(np.mean(err * err)), mins=mins, grid=grid)
    rtn = quantize_rtn(np.where(keep, W0, np.float32(0.0)), bits, group_size, sym, grid)
    return GPTQResult(quantized, error_gptq=output_error(W0, W_hat, H_orig),
                      error_rtn=output_error(W0, rtn.dequantize(), H_orig), damp=damp_used)
