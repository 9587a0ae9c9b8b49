"""SparseGPT: choose the mask with second-order information and fix the
surviving weights so the layer's output barely moves (Frantar & Alistarh 2023).

For one linear layer W [out, in] with calibration inputs X and

    H = 2 XᵀX / n  (+ λI, λ = 1 % of mean diag H)        [in, in]

pruning weight w_ij costs (optimal brain surgeon, one row at a time)

    ε_ij = w_ij² / [H⁻¹]_jj         (computed as w_ij² / U_jj²: the upper Cholesky
                                      factor U of H⁻¹ = UᵀU has U_jj² = [H_F⁻¹]_jj, the
                                      inverse Hessian of the columns F = j … in−1 not yet
                                      eliminated — §3.2)

and the best compensation moves the not-yet-processed columns of the row by

    δ = −(w_ij / U_jj) · U_j,j:                                (the same sweep as GPTQ)

Columns are processed left to right in blocks of B = 128 ("lazy batch"):
  * unstructured: at the start of each block, mask the k = ⌊s · out · B⌋ lowest
    ε in the block (over all rows at once — the reference's adaptive mask);
  * N:M: at every M-th column, in each row mask the N lowest ε of the next M.
Then each column j of the block is zeroed where masked, the error
err = (w_j − q_j)/U_jj pushed onto the columns right of j inside the block, and
after the block onto all later columns: W[:, rest] −= Err · U[block, rest].

Blocks are calibrated in order on the already-pruned previous blocks
(`minislm.calibration.sequential`), as in the reference code. The OBS sweep
runs in float64 (numerically sensitive) and the weights are cast back.
Deviation from the reference: the unstructured mask prunes exactly
⌊s · out · B⌋ weights per block (the reference's `<= threshold` takes one more).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import calibration
from ..errors import ConfigError
from .masks import apply_masks, check_sparsity, from_out_in, out_in, parse_nm, \
    prunable_linears


@dataclasses.dataclass(frozen=True)
class SparseGPTResult:
    """The pruned, reconstructed W, its keep-mask, the layer error with and without update."""
    weight: np.ndarray          # [out, in] pruned and reconstructed, W's dtype
    keep: np.ndarray            # [out, in] bool keep-mask
    error: float                # ‖W X − Ŵ X‖² / n  (= ½ tr(ΔW H ΔWᵀ))
    error_no_update: float      # the same mask applied without reconstruction
    damp: float


def layer_error(delta: np.ndarray, H: np.ndarray) -> float:
    """‖ΔW X‖² / n = ½ Σ_rows ΔW H ΔWᵀ for H = 2 XᵀX / n."""
    d = delta.astype(np.float64)
    return 0.5 * float(((d @ H) * d).sum())


def sparsegpt_matrix(W: np.ndarray, H: np.ndarray, sparsity: float | None = None,
                     nm: tuple | None = None, blocksize: int = 128,
                     damp: float = 0.01) -> SparseGPTResult:
    """Prune W [out, in] given H [in, in]: unstructured `sparsity` or `nm` = (N, M)."""
    if (sparsity is None) == (nm is None):
        raise ConfigError("SparseGPT needs exactly one of sparsity (0–1) or nm ('N:M')")
    out, d_in = W.shape
    if nm is not None:
        n, m = nm
        if d_in % m or blocksize % m:
            raise ConfigError(f"{n}:{m} sparsity needs the input width ({d_in}) and the block "
                              f"size ({blocksize}) to be multiples of {m}")
    U, damp = calibration.inverse_hessian_factor(H, damp)                # H⁻¹ = UᵀU
    dead = np.diag(H) == 0
    Wd = W.astype(np.float64)                                            # [out, in]
    Wd[:, dead] = 0.0                                                    # inputs never excited
    keep = np.ones((out, d_in), dtype=bool)
    for b0 in range(0, d_in, blocksize):
        b1 = min(b0 + blocksize, d_in)
        W1, U1 = Wd[:, b0:b1].copy(), U[b0:b1, b0:b1]                    # [out, B], [B, B]
        Err1 = np.zeros_like(W1)
        keep1 = np.ones(W1.shape, dtype=bool)
        if nm is None:
            eps = W1 * W1 / (np.diag(U1)[None, :] ** 2)                  # ε [out, B]
            k = int(eps.size * sparsity)
            keep1.reshape(-1)[np.argsort(eps.reshape(-1), kind="stable")[:k]] = False
        for j in range(b1 - b0):
            if nm is not None and j % nm[1] == 0:
                eps = W1[:, j:j + nm[1]] ** 2 / (np.diag(U1)[j:j + nm[1]][None, :] ** 2)
                lowest = np.argsort(eps, axis=1, kind="stable")[:, :nm[0]]   # [out, N]
                np.put_along_axis(keep1[:, j:j + nm[1]], lowest, False, axis=1)
            w = W1[:, j]
            q = np.where(keep1[:, j], w, 0.0)
            err = (w - q) / U1[j, j]                                     # [out]
            W1[:, j:] -= np.outer(err, U1[j, j:])
            W1[:, j] = q
            Err1[:, j] = err
        Wd[:, b0:b1] = W1
        Wd[:, b1:] -= Err1 @ U[b0:b1, b1:]
        keep[:, b0:b1] = keep1
    Wd[~keep] = 0.0
    new = Wd.astype(W.dtype)
    return SparseGPTResult(new, keep, layer_error(new - W, H),
                           layer_error(np.where(keep, W, 0) - W, H), damp)


def sparsegpt(model, token_batches, sparsity: float | None = None, nm=None, names=None,
              blocksize: int = 128, damp: float = 0.01, batch_size: int = 8,
              progress: bool = False):
    """A new model pruned with SparseGPT, block by block on the calibration windows."""
    if (sparsity is None) == (nm is None):
        raise ConfigError("SparseGPT needs exactly one of sparsity (0–1) or nm ('N:M')")
    sparsity = None if sparsity is None else check_sparsity(sparsity)
    nm = None if nm is None else parse_nm(nm)
    chosen = {lin.name: lin for lin in prunable_linears(model, names)}

    def prune_block(model, i, stats):
        masks, weights = {}, {}
        for name, s in stats.items():
            lin = chosen.get(name)
            if lin is None:
                continue
            result = sparsegpt_matrix(out_in(model.params[name], lin.orientation),
                                      s.hessian(), sparsity, nm, blocksize, damp)
            masks[name] = from_out_in(result.keep, lin.orientation)
            weights[name] = from_out_in(result.weight, lin.orientation)
        return apply_masks(model, masks, new_weights=weights)

    return calibration.sequential(model, token_batches, prune_block, stats=("xtx",),
                                  batch_size=batch_size, progress=progress)
