"""Unstructured L1 magnitude pruning: zero the weights closest to zero.

For a tensor W with n entries and amount a ∈ [0, 1], the k = round(a·n)
entries with the smallest |W_ij| are pruned:

    M_ij = 0  if |W_ij| is among the k smallest,  1 otherwise;   W' = W ⊙ M

exactly the rule of `torch.nn.utils.prune.l1_unstructured` (k rounds with
Python's `round`, ties to even). Two scopes:

* ``layer``  — every linear weight loses the same fraction a of its entries;
* ``global`` — one threshold over all pruned weights together
  (`torch.nn.utils.prune.global_unstructured`): layers with many small weights
  lose more than a, others less.

This is the GPT-2 slides' "prune 40 % of the smallest weights (L1)". It ignores
the activations entirely, which is why WANDA (`wanda.py`) does better at equal
sparsity: a small weight on a channel with huge activations still matters.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .masks import apply_masks, check_sparsity, from_out_in, lowest_mask, nm_mask, out_in, \
    parse_nm, prunable_linears


def l1_unstructured_mask(W: np.ndarray, amount: float) -> np.ndarray:
    """Keep-mask (bool, W's shape) with the round(amount·n) smallest |W| pruned."""
    amount = check_sparsity(amount)
    k = round(amount * W.size)
    return lowest_mask(np.abs(W).reshape(-1), k).reshape(W.shape)


def global_l1_masks(weights: dict, amount: float) -> dict:
    """{name: keep-mask}: the round(amount·Σn) smallest |W| over all tensors together pruned."""
    amount = check_sparsity(amount)
    names = list(weights)
    flat = np.concatenate([np.abs(weights[n]).reshape(-1) for n in names])   # [Σn]
    keep = lowest_mask(flat, round(amount * flat.size))
    masks, start = {}, 0
    for n in names:
        size = weights[n].size
        masks[n] = keep[start:start + size].reshape(weights[n].shape)
        start += size
    return masks


def magnitude_prune(model, sparsity: float | None = None, scope: str = "layer", names=None,
                    nm=None):
    """A new model with unstructured L1 magnitude pruning of the block linear weights.

    scope "layer": each weight loses `sparsity` of its entries; "global": one threshold
    across all of them. nm ('2:4', …): the N smallest |W| of every M consecutive
    inputs instead (the magnitude baseline of the WANDA paper's N:M tables).
    Biases, norms, embeddings and the LM head are not pruned.
    """
    linears = prunable_linears(model, names)
    weights = {lin.name: model.params[lin.name] for lin in linears}
    if (sparsity is None) == (nm is None):
        raise ConfigError("magnitude pruning needs exactly one of sparsity (0–1) or nm ('N:M')")
    if nm is not None:
        n, m = parse_nm(nm)
        masks = {lin.name: from_out_in(nm_mask(np.abs(out_in(weights[lin.name], lin.orientation)),
                                               n, m, lin.name), lin.orientation)
                 for lin in linears}
    elif scope == "layer":
        masks = {n: l1_unstructured_mask(W, sparsity) for n, W in weights.items()}
    elif scope == "global":
        masks = global_l1_masks(weights, sparsity)
    else:
        raise ConfigError(f"magnitude pruning scope must be 'layer' or 'global', found {scope!r}")
    return apply_masks(model, masks)
