"""WANDA: prune by weight magnitude × input activation norm (Sun et al. 2023).

For a linear layer W [out, in] whose calibration inputs X [n, in] have column
norms ‖X_j‖₂ (over all n calibration tokens):

    S_ij = |W_ij| · ‖X_j‖₂                                  (WANDA §3, eq. 1)

and the lowest scores are pruned *within each output row* (the paper's
"per-output" comparison group): row i loses ⌊s·in⌋ weights. No weight update.

N:M semi-structured sparsity (LLaMA thesis §3.3.2, the 2:4 pattern of NVIDIA's
sparse tensor cores): within every group of M consecutive inputs of a row, the
N lowest scores are pruned — N of M zero, the pattern provable by counting.

Layers are processed in order (`minislm.calibration.sequential`): block i is
calibrated on the outputs of the already-pruned blocks 0 … i−1, as in the
reference implementation (locuslab/wanda `prune_wanda`).
"""
from __future__ import annotations

import numpy as np

from .. import calibration
from ..errors import ConfigError
from .masks import apply_masks, check_sparsity, from_out_in, nm_mask, out_in, parse_nm, \
    prunable_linears, row_mask


def wanda_scores(W: np.ndarray, col_norm: np.ndarray) -> np.ndarray:
    """S = |W| · ‖X_j‖₂ for W [out, in] and col_norm [in] -> [out, in]."""
    return np.abs(W) * col_norm[None, :]


def wanda_mask(W: np.ndarray, col_norm: np.ndarray, sparsity: float | None = None,
               nm: tuple | None = None, name: str = "weight") -> np.ndarray:
    """Keep-mask [out, in] of W [out, in]: per-row unstructured or N:M."""
    S = wanda_scores(W, col_norm)
    if nm is not None:
        return nm_mask(S, *nm, name=name)
    return row_mask(S, sparsity)


def wanda(model, token_batches, sparsity: float | None = None, nm=None, names=None,
          sequential: bool = True, batch_size: int = 8, progress: bool = False):
    """A new model pruned with WANDA: `sparsity` per output row, or `nm` ('2:4', (4, 8), …).

    token_batches: calibration ids [N, T] (see `calibration.calibration_batches`).
    sequential=False calibrates every layer on the dense model in one pass (faster,
    slightly worse: later layers never see the earlier layers' pruning).
    """
    if (sparsity is None) == (nm is None):
        raise ConfigError("WANDA needs exactly one of sparsity (0–1) or nm ('N:M')")
    sparsity = None if sparsity is None else check_sparsity(sparsity)
    nm = None if nm is None else parse_nm(nm)
    chosen = {lin.name: lin for lin in prunable_linears(model, names)}

    def prune(model, stats, layer_filter):
        masks = {}
        for name, lin in chosen.items():
            if name in stats and layer_filter(lin):
                W = out_in(model.params[name], lin.orientation)                  # [out, in]
                keep = wanda_mask(W, stats[name].col_norm, sparsity, nm, name)  # [out, in]
                masks[name] = from_out_in(keep, lin.orientation)
        return apply_masks(model, masks)

    if sequential:
        return calibration.sequential(
            model, token_batches, lambda m, i, stats: prune(m, stats, lambda lin: lin.layer == i),
            stats=("sq_norm",), batch_size=batch_size, progress=progress)
    stats = calibration.collect(model, token_batches, ("sq_norm",), names=list(chosen),
                                batch_size=batch_size, progress=progress)
    return prune(model, stats, lambda lin: True)

