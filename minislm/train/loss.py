"""Cross-entropy of a causal LM, with transformers' `labels` convention, and its gradient.

transformers' `ForCausalLMLoss`: position t predicts token t + 1, so the shift
happens inside — logits[:, :-1] are scored against labels[:, 1:]; a label of
−100 is not counted; the loss is the mean over the counted tokens:

    ℓ = −(1/N) Σ_{(b,t) counted} log softmax(z[b, t])[y[b, t+1]],   N = #counted

and its gradient on the logits, for a counted row (zero elsewhere, including
the last position, which predicts nothing):

    ∂ℓ/∂z[b, t] = (softmax(z[b, t]) − onehot(y[b, t+1])) / N

Passing `labels = input_ids` trains on every next token; set prompt positions
to −100 to train on the answers only (tool calls, instructions).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

IGNORE_INDEX = -100


def shift_labels(labels, V: int):
    """targets [B, T] (labels[:, 1:] padded with −100 at the end) and the counted mask."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[None, :]
    if labels.dtype.kind not in "iu":
        raise InputError(f"labels must be integer token ids (or -100), found dtype {labels.dtype}")
    targets = np.full(labels.shape, IGNORE_INDEX, dtype=np.int64)
    targets[:, :-1] = labels[:, 1:]
    counted = targets != IGNORE_INDEX                                    # [B, T]
    bad = counted & ((targets < 0) | (targets >= V))
    if bad.any():
        raise InputError(f"labels must lie in [0, {V}) or be {IGNORE_INDEX}, found "
                         f"{targets[bad][0]}")
    return targets, counted


def cross_entropy_forward(logits, labels):
    """Mean next-token cross-entropy of logits [B, T, V] against labels [B, T]; (loss, cache)."""
    B, T, V = logits.shape
    targets, counted = shift_labels(labels, V)
    if targets.shape != (B, T):
        raise InputError(f"labels must have the shape of input_ids {(B, T)}, "
                         f"found {targets.shape}")
    N = int(counted.sum())
    if N == 0:
        raise InputError("labels count no token (all are -100 after the shift): the mean "
                         "cross-entropy is undefined")
    z = logits[counted]                                                  # [N, V] (a copy)
    z -= z.max(-1, keepdims=True)
    y = targets[counted]                                                 # [N]
    z_y = z[np.arange(N), y]                                             # [N]
    e = np.exp(z, out=z)
    sum_e = e.sum(-1, keepdims=True)                                     # [N, 1]
    # −log p_y = log Σ e^z − z_y ; the N-term sum accumulated in float64
    nll = np.log(sum_e[:, 0]) - z_y
    loss = float(nll.sum(dtype=np.float64) / N)
    probs = np.divide(e, sum_e, out=e)                                   # [N, V]
    return loss, (probs, y, counted, N, logits.shape, logits.dtype)


def cross_entropy_backward(cache):
    """dz = (softmax(z) − onehot(y)) / N on counted rows, 0 elsewhere -> [B, T, V]."""
    probs, y, counted, N, shape, dtype = cache
    probs[np.arange(N), y] -= 1.0
    probs *= 1.0 / N
    dlogits = np.zeros(shape, dtype=dtype)
    dlogits[counted] = probs
    return dlogits
