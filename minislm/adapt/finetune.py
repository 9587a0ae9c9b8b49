"""Supervised fine-tuning: full, or LoRA adapters only, on prompt/response examples.

The objective of the voice-assistant thesis (§5.3.2): maximise the likelihood
of the answer given the prompt, on the answer's tokens only,

    L = −(1/N) Σ_{(x, y)} Σ_{t=1}^{|y|} log P_Φ(y_t | x, y_<t)       N = Σ |y|

(labels −100 on the prompt, see `minislm.train.loss`). Each example is
tokenised as prompt + response + end-of-text, so the model also learns to stop.

    full fine-tuning    Φ = every array of `model.params`
    LoRA                Φ = Φ₀ + ΔΦ(Θ), Θ = the adapters' A and B; Φ₀ frozen
                        (plus, optionally, whole dense weights: after adding tool
                        tokens their new embedding / LM-head rows must be learnt)

Batches: `batch_size` examples drawn from `default_rng([seed, draw])`,
right-padded to the longest (`minislm.data.examples`, where the loaders of
"toolcall", "requirements" and files live). The update is the one loop of
`minislm.train.loop` (AdamW with warm-up + cosine decay, global-norm clipping,
accumulation); only the trained tensors and the loss are fine-tuning's own.
The input model is never modified.
"""
from __future__ import annotations

import math

import numpy as np

from .. import resources
from ..data.examples import (load_examples, make_batch, pad_id_of, sample_batch,  # noqa: F401
                             text_windows)
from ..errors import ConfigError, InputError
from ..model.forward import forward
from ..train.backward import loss_and_grads
from ..train.loop import TrainOptions, training_loop
from . import lora

# load_examples, make_batch and text_windows are re-exported: `ft.load_examples(...)`
# reads as "the examples fine-tuning trains on".
DEFAULT_LR = {"full": 3e-4, "lora": 1e-3}   # peak learning rates


# ------------------------------------------------------------------ the loop
def trainable_tensors(model, also_train=()) -> dict:
    """Working copies of what training updates: the LoRA A/B (plus the dense
    weights named in `also_train`) if the model has adapters, everything else
    frozen; otherwise every array (full fine-tuning)."""
    if lora.lora_weights(model):
        dense = {name: model.params[name].copy() for name in also_train}
        return {**{k: v.copy() for k, v in lora.trainable(model).items()}, **dense}
    return {k: v.copy() for k, v in model.params.items() if isinstance(v, np.ndarray)}


def with_tensors(model, tensors: dict, dropout_seed=None):
    """The model with `tensors` (from `trainable_tensors`) put in place."""
    dense = {k: v for k, v in tensors.items() if k in model.params}
    model = model.replace(params={**model.params, **dense})
    if lora.lora_weights(model):
        return lora.with_trainable(model, tensors, dropout_seed)
    return model


def flat_grads(grads: dict) -> dict:
    """LoRA weights report {"lora_A", "lora_B"} under their weight name: flatten to
    the keys of `lora.trainable`."""
    out = {}
    for name, g in grads.items():
        if isinstance(g, dict):
            for part, value in g.items():
                out[f"{name}.{part}"] = value
        else:
            out[name] = g
    return out


def default_lr(adapters: bool) -> float:
    """The default peak learning rate: 1e-3 for LoRA adapters, 3e-4 for full fine-tuning."""
    return DEFAULT_LR["lora" if adapters else "full"]


def finetune_options(steps: int, lr: float, batch_size: int = 16, seed: int = 0,
                     seq_len: int = 128, warmup: int | None = None, weight_decay: float = 0.0,
                     clip: float | None = 1.0, grad_accum: int = 1) -> TrainOptions:
    """The loop's options for fine-tuning and distillation, checked (ConfigError if unusable).

    AdamW with β = (0.9, 0.999), linear warm-up over `warmup` steps (default 10 % of
    them) and a cosine decay from η = lr to lr/10; `seq_len` is the longest example.
    The pipeline calls this to refuse a bad stage before any work.
    """
    if warmup is None and isinstance(steps, (int, np.integer)):
        warmup = max(1, steps // 10)
    options = TrainOptions(steps=steps, batch_size=batch_size, seq_len=seq_len,
                           grad_accum=grad_accum, lr=lr, min_lr=0.1 * lr, warmup=warmup,
                           weight_decay=weight_decay, beta1=0.9, beta2=0.999, clip=clip,
                           seed=seed, eval_every=0, save_every=0)
    options.validate()
    return options


def optimise(model, loss_fn, options: TrainOptions, progress: bool = True,
             desc: str = "finetune", also_train=(), extra_bytes: int = 0):
    """Train `model` with the one loop of `minislm.train.loop`; returns (new model, losses).

    What is trained: the LoRA A and B (plus the dense weights named in
    `also_train`) if the model has adapters, else every array.
    loss_fn(model_view, draw) -> (loss, grads) computes the loss of batch number
    `draw` on the current weights (`minislm.train.backward.loss_and_grads`
    underneath); adapter dropout draws its masks from the seed and `draw` too.
    extra_bytes: memory the loss holds besides the training step (a teacher's
    logits), added to the preflight estimate.
    """
    options.validate()
    stuck = [name for name, w in model.params.items() if not isinstance(w, np.ndarray)
             and not hasattr(w, "linear_backward")]
    if stuck:
        raise ConfigError(f"{len(stuck)} weights (e.g. '{stuck[0]}') are compressed tensors "
                          "without a backward (linear_backward), so no gradient can pass "
                          "through them; dequantize them or wrap them in LoRA")
    tensors = trainable_tensors(model, also_train)
    resources.check_training(model, options.batch_size, options.seq_len, tensors, extra_bytes,
                             what=desc)

    def step_loss(tensors, draw):
        view = with_tensors(model, tensors, dropout_seed=options.seed * 1_000_003 + draw)
        loss, grads = loss_fn(view, draw)
        return loss, flat_grads(grads)

    _, history = training_loop(tensors, step_loss, options, progress=progress, desc=desc,
                               leave=False)
    return with_tensors(model, tensors, dropout_seed=None), [r["loss"] for r in history]


def finetune(model, examples, steps: int, lr: float | None = None, batch_size: int = 16,
             seed: int = 0, progress: bool = True, also_train=(), **optim):
    """Fine-tune on [(ids, labels)] examples: full, or adapters only if the model has LoRA
    weights (use `lora.add_lora` first) plus the dense weights named in `also_train`
    (e.g. the resized embedding and LM head). Returns (new model, losses).

    optim: warmup, weight_decay, clip, grad_accum (see `finetune_options`).
    """
    if not examples:
        raise InputError("finetune: no examples")
    frozen = lora.lora_weights(model) != {}
    lr = default_lr(frozen) if lr is None else lr
    options = finetune_options(steps, lr, batch_size, seed,
                               seq_len=max(len(ids) for ids, _ in examples), **optim)
    pad = pad_id_of(model.tokenizer) if model.tokenizer is not None else 0
    also_train = tuple(also_train)
    trainable = (lambda name: name in also_train) if frozen else None

    def loss_fn(view, draw):
        ids, labels = sample_batch(examples, batch_size, seed, draw, pad)
        loss, grads = loss_and_grads(view, ids, labels, trainable=trainable)
        if not math.isfinite(loss):      # name the first layer whose activations overflow
            forward(view, ids, check_numerics=True)
        return loss, grads

    return optimise(model, loss_fn, options, progress=progress,
                    also_train=also_train if frozen else ())
