"""Depth pruning: remove whole transformer blocks, ranked by an importance score.

Four block-importance metrics I_i (higher = keep), as in Shortened-LLaMA
(Kim et al. 2024, §3.1) and the LLaMA thesis §3.3.1, plus ShortGPT/Minitron's
block importance used in the voice-assistant thesis §5.4.1:

    magnitude   I_i = Σ_{W ∈ block i} Σ |W|                    (L1 of the block's weights)
    taylor      I_i = Σ_{W ∈ block i} Σ |W ⊙ ∂L/∂W|            (Taylor+: L(W=0) ≈ L(W) − ∇L·W,
                                                                  thesis eq. 3.1, per weight)
    ppl         I_i = PPL(model without block i)                (on the calibration text)
    block       I_i = mean_t [1 − cos(x_i,t, x_{i+1},t)]        (BI: how much the block turns
                                                                  the residual stream)

The k blocks with the lowest I_i among the unprotected ones are removed. The
first `protect_first` and last `protect_last` blocks are never removed (the
thesis protects the first 4 and last 2 of LLaMA-3.2-1B's 16).

Two rules that ignore the data:
  * `symmetric_middle(L, k)` — the GPT-2 slides' "remove symmetrically from the
    centre" (12 → 6 layers keeps 0, 1, 2, 9, 10, 11);
  * Franken-LLaMA: any block sequence, e.g. [0, 1, 2, 2, 3], runs with
    `minislm.forward(model, ids, layers=...)` without copying a weight;
    `select_layers` turns such a sequence into a standalone checkpoint.

Removing blocks renumbers the tensor names (h.5 → h.3) and sets n_layer in the
config, so the result is an ordinary, smaller checkpoint.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..model import families
from ..model.forward import forward

IMPORTANCES = ("magnitude", "taylor", "ppl", "block")
THESIS_PROTECT = (4, 2)   # LLaMA thesis / Shortened-LLaMA: never the first 4 or the last 2


def block_params(model, i: int) -> list[str]:
    """Names of every tensor of block i."""
    p = families.block_prefix(model.config, model.prefix, i)
    return [name for name in model.params if name.startswith(p)]


def _batches(token_batches, batch_size: int = 8):
    """Calibration windows [N, T] as batches of at most batch_size rows."""
    if token_batches is None:
        raise InputError("this importance metric needs calibration token batches")
    ids = np.asarray(token_batches)
    ids = ids[None] if ids.ndim == 1 else ids
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]


def magnitude_importance(model) -> np.ndarray:
    """I_i = Σ |W| over every tensor of block i -> [L] float64."""
    return np.array([sum(float(np.abs(model.params[n]).sum(dtype=np.float64))
                         for n in block_params(model, i)) for i in range(model.config.n_layer)])


def taylor_importance(model, token_batches, progress: bool = False) -> np.ndarray:
    """I_i = Σ |W ⊙ ḡ| over block i's tensors, ḡ = ∂L/∂W of the mean calibration loss -> [L]."""
    from ..train.backward import value_and_grad
    batches = _batches(token_batches)
    total = None
    for ids in tqdm(batches, desc="gradients", disable=not progress):
        _, grads = value_and_grad(model, ids, ids)
        total = grads if total is None else {k: total[k] + grads[k] for k in total}
    return np.array([sum(float(np.abs(model.params[n] * (total[n] / len(batches)))
                               .sum(dtype=np.float64)) for n in block_params(model, i))
                     for i in range(model.config.n_layer)])


def calibration_perplexity(model, token_batches, layers=None) -> float:
    """exp(mean next-token NLL) of the calibration windows, running blocks `layers`."""
    from ..train.loss import cross_entropy_forward
    nll, count = 0.0, 0
    for ids in _batches(token_batches):
        loss, _ = cross_entropy_forward(forward(model, ids, layers=layers), ids)
        n = ids.shape[0] * (ids.shape[1] - 1)
        nll, count = nll + loss * n, count + n
    return math.exp(nll / count)


def perplexity_importance(model, token_batches, progress: bool = False) -> np.ndarray:
    """I_i = perplexity of the calibration text with block i skipped -> [L]."""
    L = model.config.n_layer
    return np.array([calibration_perplexity(model, token_batches,
                                            [j for j in range(L) if j != i])
                     for i in tqdm(range(L), desc="ppl without each block",
                                   disable=not progress)])


def block_importance(model, token_batches) -> np.ndarray:
    """BI_i = mean over tokens of 1 − cos(x_i, x_{i+1}) (input and output of block i) -> [L]."""
    L = model.config.n_layer
    total, count = np.zeros(L), 0
    for ids in _batches(token_batches):
        hidden = []
        forward(model, ids, hidden_states=hidden)                     # L+1 × [B, T, C]
        for i in range(L):
            a, b = hidden[i].astype(np.float64), hidden[i + 1].astype(np.float64)
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
                                     + 1e-12)                          # [B, T]
            total[i] += (1.0 - cos).sum()
        count += ids.size
    return total / count


def importance(model, method: str, token_batches=None, progress: bool = False) -> np.ndarray:
    """Block importance [L] by `method` (one of IMPORTANCES); higher = more important."""
    if method == "magnitude":
        return magnitude_importance(model)
    if method == "taylor":
        return taylor_importance(model, token_batches, progress)
    if method == "ppl":
        return perplexity_importance(model, token_batches, progress)
    if method == "block":
        return block_importance(model, token_batches)
    raise ConfigError(f"depth importance must be one of {IMPORTANCES}, found {method!r}")


def protection(n_layer: int, k: int, protect_first: int | None = None,
               protect_last: int | None = None) -> tuple[int, int]:
    """(first, last): how many blocks at each end are never removed.

    Explicit values are only checked. A side left as None starts at the thesis'
    value (first 4, last 2) and, on a model too shallow to remove k blocks
    outside them, is lowered one block at a time (the larger side first) until
    k blocks are removable.
    """
    if not 0 < k < n_layer:
        raise ConfigError(f"can remove 1 … {n_layer - 1} blocks of a {n_layer}-layer model, "
                          f"asked for {k}")
    ends = {"first": THESIS_PROTECT[0] if protect_first is None else protect_first,
            "last": THESIS_PROTECT[1] if protect_last is None else protect_last}
    if min(ends.values()) < 0:
        raise ConfigError(f"protected block counts must be ≥ 0, found {ends}")
    auto = [side for side, given in (("first", protect_first), ("last", protect_last))
            if given is None]
    while n_layer - sum(ends.values()) < k:
        lowerable = [side for side in auto if ends[side] > 0]
        if not lowerable:
            raise ConfigError(f"cannot remove {k} of {n_layer} blocks while protecting the "
                              f"first {ends['first']} and the last {ends['last']}; lower "
                              "--protect-first/--protect-last")
        ends[max(lowerable, key=lambda side: (ends[side], side == "last"))] -= 1
    return ends["first"], ends["last"]


def choose_blocks(scores, k: int, protect_first: int | None = None,
                  protect_last: int | None = None) -> list[int]:
    """The k unprotected blocks with the lowest importance, ascending block order."""
    scores = np.asarray(scores, dtype=np.float64)
    L = len(scores)
    first, last = protection(L, k, protect_first, protect_last)
    candidates = np.arange(first, L - last)
    order = candidates[np.argsort(scores[candidates], kind="stable")]
    return sorted(int(i) for i in order[:k])


def symmetric_middle(n_layer: int, k: int) -> list[int]:
    """The k blocks closest to the centre (n_layer − 1)/2: the GPT-2 slides' trimming rule."""
    if not 0 < k < n_layer:
        raise ConfigError(f"can remove 1 … {n_layer - 1} blocks of a {n_layer}-layer model, "
                          f"asked for {k}")
    centre = (n_layer - 1) / 2
    return sorted(sorted(range(n_layer), key=lambda i: (abs(i - centre), i))[:k])


def parse_layers(text: str) -> list[int]:
    """'0,1,2,2,3' -> [0, 1, 2, 2, 3]."""
    try:
        layers = [int(t) for t in str(text).replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ConfigError(f"a block sequence looks like '0,1,2,2,3', found {text!r}") from None
    if not layers:
        raise ConfigError("the block sequence is empty")
    return layers


def select_layers(model, layers) -> "Model":
    """A new model whose block j is block layers[j] of `model` (renumbered tensor names).

    Removing blocks is the increasing case; a Franken sequence with repeats
    (e.g. [0, 1, 2, 2, 3]) gives a checkpoint storing the repeated block twice.
    The arrays are shared with the input model, never copied or modified.
    """
    L = model.config.n_layer
    layers = [int(i) for i in layers]
    if not layers or any(not 0 <= i < L for i in layers):
        raise ConfigError(f"block sequence {layers} must be non-empty with indices in "
                          f"[0, {L}) for this {L}-layer model")
    cfg, prefix = model.config, model.prefix
    old_prefixes = [families.block_prefix(cfg, prefix, i) for i in range(L)]

    def renamed(tensors):
        out = {n: v for n, v in tensors.items() if not any(n.startswith(p) for p in old_prefixes)}
        for j, i in enumerate(layers):
            old, new = old_prefixes[i], families.block_prefix(cfg, prefix, j)
            out.update({new + n[len(old):]: v for n, v in tensors.items() if n.startswith(old)})
        return out

    extra = dict(model.extra_tensors)
    if "masks" in extra:
        extra["masks"] = renamed(extra["masks"])
    return model.replace(config=cfg.select_layers(layers),
                         params=renamed(model.params), extra_tensors=extra)


def remove_layers(model, drop) -> "Model":
    """A new model without blocks `drop`, the rest renumbered 0 … L−k−1."""
    drop = set(int(i) for i in drop)
    if drop - set(range(model.config.n_layer)):
        raise ConfigError(f"blocks {sorted(drop)} are not all in [0, {model.config.n_layer})")
    return select_layers(model, [i for i in range(model.config.n_layer) if i not in drop])


def blocks_to_remove(model, k: int, method: str = "ppl", token_batches=None,
                     protect_first: int | None = None, protect_last: int | None = None,
                     progress: bool = False) -> tuple[list[int], np.ndarray | None]:
    """(the k blocks to remove in ascending order, the importance scores [L] they were
    chosen by — None for "middle", the symmetric rule that needs no data)."""
    if method == "middle":
        drop = symmetric_middle(model.config.n_layer, k)
        first, last = protect_first or 0, protect_last or 0
        if any(i < first or i >= model.config.n_layer - last for i in drop):
            raise ConfigError(f"the symmetric middle {drop} includes protected blocks "
                              f"(first {first}, last {last})")
        return drop, None
    scores = importance(model, method, token_batches, progress)
    return choose_blocks(scores, k, protect_first, protect_last), scores


def depth_prune(model, k: int, method: str = "ppl", token_batches=None,
                protect_first: int | None = None, protect_last: int | None = None,
                progress: bool = False) -> "Model":
    """A new model with the k least important unprotected blocks removed.

    method: one of IMPORTANCES, or "middle" for the symmetric rule (no data needed).
    """
    drop, _ = blocks_to_remove(model, k, method, token_batches, protect_first, protect_last,
                               progress)
    return remove_layers(model, drop)
