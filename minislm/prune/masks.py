"""Masks shared by the unstructured pruners (magnitude, WANDA, SparseGPT).

A mask M has the shape of the weight it belongs to (the checkpoint's layout),
1 = weight kept, 0 = weight pruned. A pruned model keeps its dense weights with
the zeros in place (W ⊙ M, so any loader runs it unchanged) and the masks in
`model.extra_tensors["masks"]`, which `minislm.save` writes as masks.safetensors
(so later fine-tuning can keep pruned weights at zero).

Compression methods think of a weight as W [out, in] (one row per output, one
column per input channel: y = x Wᵀ); GPT-2's Conv1D stores Wᵀ. `out_in` and
`from_out_in` convert, so every method has one code path for every family.

N:M semi-structured sparsity: in every group of M consecutive input weights of
a row (columns m·M … m·M + M − 1 of W [out, in]), at least N are zero.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InputError
from ..model import families


def out_in(W: np.ndarray, orientation: str) -> np.ndarray:
    """W as [out, in] (a view)."""
    return W.T if orientation == "in_out" else W


def from_out_in(W: np.ndarray, orientation: str) -> np.ndarray:
    """[out, in] back to the checkpoint layout (a view)."""
    return W.T if orientation == "in_out" else W


def prunable_linears(model, names=None):
    """The linear layers pruned by default: every block linear (not the embedding/LM head)."""
    linears = families.linear_layers(model.config, model.prefix)
    if names is None:
        return linears
    known = {lin.name for lin in linears}
    missing = [n for n in names if n not in known]
    if missing:
        raise InputError(f"cannot prune {missing[:3]}: not block linear weights of this "
                         f"{model.config.family} model")
    return [lin for lin in linears if lin.name in set(names)]


def check_sparsity(sparsity: float) -> float:
    """The sparsity as a float; ConfigError unless it is a number in [0, 1]."""
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) <= 1.0:
        raise ConfigError(f"sparsity must be a number in [0, 1], found {sparsity!r}")
    return float(sparsity)


def parse_nm(nm) -> tuple[int, int]:
    """'2:4' or (2, 4) -> (N, M) with 0 < N < M: N of every M weights pruned."""
    try:
        n, m = (int(v) for v in (nm.split(":") if isinstance(nm, str) else nm))
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"N:M pattern must look like '2:4', found {nm!r}") from None
    if not 0 < n < m:
        raise ConfigError(f"N:M pattern {n}:{m}: expected 0 < N < M (N pruned of every M)")
    return n, m


def lowest_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask of a 1-D score vector with its k lowest entries pruned (ties: lowest index)."""
    keep = np.ones(scores.shape, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:k]] = False
    return keep


def row_mask(S: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask of S [out, in]: in every row the ⌊sparsity·in⌋ lowest scores pruned."""
    k = int(S.shape[1] * sparsity)
    keep = np.ones(S.shape, dtype=bool)
    lowest = np.argsort(S, axis=1, kind="stable")[:, :k]                    # [out, k]
    np.put_along_axis(keep, lowest, False, axis=1)
    return keep


def nm_mask(S: np.ndarray, n: int, m: int, name: str = "weight") -> np.ndarray:
    """Keep-mask of S [out, in]: the n lowest of every m consecutive inputs of a row pruned."""
    out, d_in = S.shape
    if d_in % m:
        raise ConfigError(f"{name}: {d_in} input channels are not a multiple of M={m}; "
                          f"{n}:{m} sparsity needs whole groups of {m}")
    groups = S.reshape(out, d_in // m, m)                                   # [out, in/m, m]
    keep = np.ones(groups.shape, dtype=bool)
    lowest = np.argsort(groups, axis=2, kind="stable")[:, :, :n]            # [out, in/m, n]
    np.put_along_axis(keep, lowest, False, axis=2)
    return keep.reshape(out, d_in)


def zeros_per_group(mask_out_in: np.ndarray, m: int) -> np.ndarray:
    """Number of pruned weights in every group of m consecutive inputs [out, in/m]."""
    out, d_in = mask_out_in.shape
    return (mask_out_in[:, : d_in - d_in % m] == 0).reshape(out, -1, m).sum(axis=2)


def apply_masks(model, masks: dict, new_weights: dict | None = None):
    """A new model with W ⊙ M for every {name: keep-mask in checkpoint layout}.

    new_weights (optional): replacement weights (checkpoint layout) to mask,
    for methods that also update the kept weights (SparseGPT). Masks already on
    the model are combined (a weight once pruned stays pruned).
    """
    params = dict(model.params)
    stored = dict(model.extra_tensors.get("masks", {}))
    for name, keep in masks.items():
        keep = np.asarray(keep, dtype=bool)
        if name in stored:
            keep = keep & np.asarray(stored[name], dtype=bool)
        W = (new_weights or {}).get(name, params[name])
        if W.shape != keep.shape:
            raise InputError(f"mask for '{name}' has shape {keep.shape}, weight has {W.shape}")
        params[name] = np.where(keep, W, np.zeros((), dtype=W.dtype)).astype(W.dtype)
        stored[name] = keep.astype(np.uint8)
    extra = dict(model.extra_tensors)
    extra["masks"] = stored
    return model.replace(params=params, extra_tensors=extra)
