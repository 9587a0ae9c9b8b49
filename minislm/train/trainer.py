"""Training a language model on a token stream, with checkpoints (`minislm train`).

The data: B windows of T consecutive tokens at random offsets of the stream,
batch number d drawn from default_rng([seed, d]) (`data.random_batch`); the
loss: next-token cross-entropy on every token (labels = input_ids). The rest —
accumulation, clipping, AdamW, schedule, resumable state — is the one loop of
`loop.py`, shared with fine-tuning and distillation.

Files in the output folder (each written atomically, the input model untouched):
    config.json, model.safetensors, tokenizer*.json   the model, an HF folder
    trainer_state.safetensors    parameters + AdamW moments + step + history, one
                                 file so a checkpoint is never half old, half new
    history.json                 loss, learning rate, gradient norm, validation loss
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import resources
from ..errors import ConfigError
from ..loading import save
from ..model.forward import forward
from .backward import loss_and_grads
from .data import random_batch
from .loop import (HISTORY_FILE, STATE_FILE, TrainOptions, check_finite, load_state, save_state,
                   training_loop)
from .loss import cross_entropy_forward
from .optim import AdamWState

__all__ = ["HISTORY_FILE", "STATE_FILE", "TrainOptions", "evaluate_loss", "train"]


def evaluate_loss(model, windows: np.ndarray, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over windows [N, T] (every target weighs the same)."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        ids = windows[i:i + batch_size]
        loss, _ = cross_entropy_forward(forward(model, ids, check_numerics=True), ids)
        n = ids.shape[0] * (ids.shape[1] - 1)
        total, count = total + loss * n, count + n
    return total / count


def train(model, train_stream: np.ndarray, options: TrainOptions = TrainOptions(),
          val_windows: np.ndarray | None = None, out=None, resume: bool = False,
          trainable=None, progress: bool = True, stop_after: int | None = None):
    """Train a copy of `model` on `train_stream`; returns (trained model, history).

    val_windows [N, T]: validation loss every `eval_every` steps and at the end.
    out: folder for checkpoints (every `save_every` steps and at the end).
    resume: continue from out/trainer_state.safetensors.
    trainable: as in `loss_and_grads` (None = every parameter).
    stop_after: end this session after that many steps (checkpoint written); a
    later `resume=True` continues the same schedule as if never interrupted.
    Pruning masks in model.extra_tensors["masks"] are re-applied after every step
    so a pruned weight stays zero.
    """
    options.validate()
    out = Path(out) if out is not None else None
    params = {k: np.array(v) for k, v in model.params.items() if isinstance(v, np.ndarray)}
    if len(params) != len(model.params):
        raise ConfigError("train() updates plain arrays only; this model has weight objects "
                          "(quantized or LoRA-wrapped) — use loss_and_grads with its own update")
    resources.check_training(model, options.batch_size, options.seq_len, trainable=params)
    state, history = AdamWState(), []
    if resume:
        if out is None:
            raise ConfigError("resume needs the output folder of the earlier run")
        params, state, history = load_state(out, params)
    masks = {k: m.astype(bool) for k, m in (model.extra_tensors.get("masks") or {}).items()
             if k in params}
    elapsed = history[-1]["elapsed"] if history else 0.0
    started = time.perf_counter() - elapsed
    tokens_per_step = options.batch_size * options.seq_len * options.grad_accum
    end = options.steps if stop_after is None else min(options.steps, stop_after)

    def loss_fn(tensors, draw):
        """Cross-entropy of batch number `draw`: B random windows of the stream."""
        ids = random_batch(train_stream, options.batch_size, options.seq_len, options.seed,
                           draw)
        current = model.replace(params=tensors)
        loss, grads = loss_and_grads(current, ids, ids, trainable=trainable)
        if not math.isfinite(loss):      # name the first layer whose activations overflow
            forward(current, ids, check_numerics=True)
        return loss, grads

    def on_step(step, record):
        """Keep pruned weights at zero, then log, validate and checkpoint."""
        for k, keep in masks.items():
            params[k] *= keep
        record["tokens"] = (step + 1) * tokens_per_step
        record["elapsed"] = time.perf_counter() - started
        last = step + 1 == end
        if val_windows is not None and (last or (options.eval_every
                                                 and (step + 1) % options.eval_every == 0)):
            record["val_loss"] = evaluate_loss(model.replace(params=params), val_windows)
        if out is not None and (last or (options.save_every
                                         and (step + 1) % options.save_every == 0)):
            check_finite(params)                       # never a NaN checkpoint
            save(model.replace(params=params), out)
            save_state(out, params, state, history, options)

    training_loop(params, loss_fn, options, state, history, end, on_step, progress)
    return model.replace(params=params), history
