"""The whole model, forward with records and backward by hand — no autograd, no tape.

The training forward is `minislm.model.forward.forward_pass(..., keep=True)`: the
same embed → blocks → final norm → head steps as inference, each also returning
the named record its backward needs; `minislm.model.forward.backward` walks them
in reverse (each step's backward sits beside its forward in `model/block.py`,
`model/forward.py` and `model/layers.py`). This module adds the loss.

Public functions (exact signatures):

    value_and_grad(model, input_ids, labels) -> (loss: float, grads: dict)
        Mean next-token cross-entropy (transformers' `labels` convention, see
        `loss.py`) and its gradient for every parameter: `grads` has exactly the
        keys and shapes of `model.params` (checkpoint names and layouts; the tied
        head's gradient is summed into the embedding's key).

    loss_and_grads(model, input_ids, labels=None, dlogits_fn=None, trainable=None,
                   layers=None) -> (loss: float, grads: dict)
        The lower level the adaptation and pruning code builds on.
        * dlogits_fn(logits [B, T, V]) -> (loss, dlogits [B, T, V]) replaces the
          cross-entropy with any loss on the logits (distillation's KL); give it
          or `labels`, not both.
        * trainable: None (every parameter) or a collection of parameter names
          (or a predicate name -> bool); gradients are computed and returned for
          those only, and the costly dW products of frozen linears are skipped
          (the gradient still flows through them to earlier layers).
        * A linear weight that is not an np.ndarray (e.g. a LoRA-wrapped weight)
          runs `W.linear(x)` in the forward and `dx, g = W.linear_backward(x, dy)`
          in the backward; `grads[name]` is then that dict `g` of the object's own
          gradients, whatever `trainable` says.
        * layers: block order as in `minislm.forward` (a repeated block gets the
          summed gradient).

    model_forward(model, ids, layers=None) -> (logits, record: ModelRecord)
    model_backward(model, dlogits, record, trainable=None) -> grads
        The two halves, for callers that need the logits between them.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.forward import backward, check_ids, forward_pass
from .loss import cross_entropy_backward, cross_entropy_forward


def model_forward(model, ids, layers=None):
    """Logits [B, T, V] for ids [B, T] (no KV cache, positions 0 … T−1) and the records."""
    return forward_pass(model, check_ids(model, ids), layers=layers, keep=True)


def model_backward(model, dlogits, record, trainable=None) -> dict:
    """Gradients (dict name -> array, or -> dict for weight objects) from dlogits [B, T, V]."""
    return dict(backward(model, dlogits, record, trainable))


def loss_and_grads(model, input_ids, labels=None, dlogits_fn=None, trainable=None,
                   layers=None):
    """(loss, grads) for cross-entropy on `labels` or any loss given by `dlogits_fn`."""
    if (labels is None) == (dlogits_fn is None):
        raise InputError("give exactly one of labels (cross-entropy) or dlogits_fn "
                         "(logits -> (loss, dlogits))")
    logits, record = model_forward(model, input_ids, layers)
    if dlogits_fn is None:
        loss, ce = cross_entropy_forward(logits, labels)
        del logits                                                          # free [B, T, V]
        dlogits = cross_entropy_backward(ce)
    else:
        loss, dlogits = dlogits_fn(logits)
        dlogits = np.asarray(dlogits)
        if dlogits.shape != logits.shape:
            raise InputError(f"dlogits_fn returned dlogits of shape {dlogits.shape}, "
                             f"expected the logits' shape {logits.shape}")
        del logits
        dlogits = dlogits.astype(model.dtype, copy=False)
    grads = model_backward(model, dlogits, record, trainable)
    return float(loss), grads


def value_and_grad(model, input_ids, labels):
    """(mean cross-entropy, grads with exactly the keys and shapes of model.params)."""
    if labels is None:
        raise InputError("value_and_grad needs labels (pass input_ids for plain LM training)")
    loss, grads = loss_and_grads(model, input_ids, labels)
    for name, value in model.params.items():
        if name not in grads and isinstance(value, np.ndarray):
            grads[name] = np.zeros_like(value)   # e.g. a weight unused by this input
    return loss, {name: grads[name] for name in model.params}
