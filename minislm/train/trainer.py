"""The training loop: batches -> loss and gradients -> clip -> AdamW, with checkpoints.

One optimiser step (of `grad_accum` micro-batches of B windows of T tokens):

    g = (1/A) Σ_a ∇ℓ(θ; batch_a)          gradient accumulation (A = grad_accum)
    g ← g · min(1, c/‖g‖₂)                  clipping
    θ ← AdamW(θ, g, η(step))               see optim.py

Every run is deterministic: the batches of step s come from the seed and s
alone (`data.random_batch`), so a run resumed from a checkpoint continues with
exactly the batches, parameters and optimiser moments of the uninterrupted run.

Files in the output folder (each written atomically, the input model untouched):
    config.json, model.safetensors, tokenizer*.json   the model, an HF folder
    trainer_state.safetensors    parameters + AdamW moments + step + history, one
                                 file so a checkpoint is never half old, half new
    history.json                 loss, learning rate, gradient norm, validation loss
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..checkpoint import atomic_write_text, read_header, read_safetensors, write_safetensors
from ..errors import CheckpointError, ConfigError, NumericalError
from ..loading import save
from ..model.forward import forward
from .backward import loss_and_grads
from .data import random_batch
from .loss import cross_entropy_forward
from .optim import AdamWState, adamw_step, clip_by_global_norm, learning_rate

STATE_FILE = "trainer_state.safetensors"
HISTORY_FILE = "history.json"


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    steps: int = 1000
    batch_size: int = 16          # B windows per micro-batch
    seq_len: int = 128            # T tokens per window
    grad_accum: int = 1           # micro-batches per optimiser step
    lr: float = 3e-3              # peak learning rate η_max
    min_lr: float = 3e-4          # η_min at the end of the schedule
    warmup: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip: float | None = 1.0
    seed: int = 0
    eval_every: int = 200         # validation loss every N steps (0: only at the end)
    save_every: int = 500         # checkpoint every N steps (0: only at the end)

    def validate(self):
        for field in ("steps", "batch_size", "seq_len", "grad_accum"):
            if getattr(self, field) < 1:
                raise ConfigError(f"training option '{field}' must be ≥ 1, found "
                                  f"{getattr(self, field)}")
        if not self.lr > 0 or self.min_lr < 0 or self.warmup < 0:
            raise ConfigError(f"learning rates must be positive and warm-up ≥ 0, found lr="
                              f"{self.lr}, min_lr={self.min_lr}, warmup={self.warmup}")


def evaluate_loss(model, windows: np.ndarray, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over windows [N, T] (every target weighs the same)."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        ids = windows[i:i + batch_size]
        loss, _ = cross_entropy_forward(forward(model, ids), ids)
        n = ids.shape[0] * (ids.shape[1] - 1)
        total, count = total + loss * n, count + n
    return total / count


def _save_checkpoint(out: Path, model, params, state: AdamWState, history, options) -> None:
    """The HF folder, then the trainer state (one file, atomic) and the history."""
    save(model.replace(params=params), out)
    tensors = {f"param/{k}": v for k, v in params.items()}
    tensors.update({f"adam_m/{k}": v for k, v in state.m.items()})
    tensors.update({f"adam_v/{k}": v for k, v in state.v.items()})
    meta = {"step": state.step, "history": json.dumps(history),
            "options": json.dumps(dataclasses.asdict(options))}
    write_safetensors(out / STATE_FILE, tensors, metadata=meta)
    atomic_write_text(out / HISTORY_FILE, json.dumps(history, indent=1))


def _load_checkpoint(out: Path, params: dict):
    """(params, AdamWState, history) from out/trainer_state.safetensors."""
    path = out / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no trainer state to resume from (run without --resume "
                              "first, or point --out at the folder of an earlier run)")
    _, meta, _ = read_header(path)
    tensors = read_safetensors(path)
    loaded = {}
    for name, value in params.items():
        key = f"param/{name}"
        if key not in tensors or tensors[key].shape != value.shape:
            raise CheckpointError(f"{path}: tensor '{key}' missing or of another shape than the "
                                  f"model's {value.shape}; was it written for another model?")
        loaded[name] = np.array(tensors[key], dtype=value.dtype)
    step = meta.get("step")
    if not (isinstance(step, str) and step.isdigit()):
        raise CheckpointError(f"{path}: metadata 'step' is {step!r}, expected a step count; "
                              "the trainer state is damaged")
    try:
        history = json.loads(meta.get("history", ""))
    except (ValueError, RecursionError):
        history = None
    if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)
            and (not history or isinstance(history[-1].get("elapsed"), (int, float)))):
        raise CheckpointError(f"{path}: metadata 'history' is missing or not a JSON list of "
                              "records; the trainer state is damaged")
    state = AdamWState(step=int(step))
    for key, value in tensors.items():
        kind, _, name = key.partition("/")
        if kind not in ("adam_m", "adam_v"):
            continue
        if name not in params or value.shape != params[name].shape:
            raise CheckpointError(f"{path}: optimizer moment '{key}' has no weight of that "
                                  "name and shape in the model; was it written for another "
                                  "model?")
        getattr(state, kind[-1])[name] = np.array(value, dtype=params[name].dtype)
    return loaded, state, history


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
    state, history = AdamWState(), []
    if resume:
        if out is None:
            raise ConfigError("resume needs the output folder of the earlier run")
        params, state, history = _load_checkpoint(out, params)
    masks = {k: m.astype(bool) for k, m in (model.extra_tensors.get("masks") or {}).items()
             if k in params}
    elapsed = history[-1]["elapsed"] if history else 0.0
    started = time.perf_counter() - elapsed
    tokens_per_step = options.batch_size * options.seq_len * options.grad_accum
    end = options.steps if stop_after is None else min(options.steps, stop_after)
    bar = tqdm(range(state.step, end), initial=state.step, total=options.steps,
               desc="train", disable=not progress, unit="step")
    for step in bar:
        current = model.replace(params=params)
        grads, loss = None, 0.0
        for a in range(options.grad_accum):
            ids = random_batch(train_stream, options.batch_size, options.seq_len, options.seed,
                               step * options.grad_accum + a)
            micro_loss, g = loss_and_grads(current, ids, ids, trainable=trainable)
            loss += micro_loss / options.grad_accum
            if grads is None:
                grads = g
            else:
                for k in grads:
                    grads[k] += g[k]
        if options.grad_accum > 1:
            grads = {k: g * (1.0 / options.grad_accum) for k, g in grads.items()}
        if not math.isfinite(loss):
            raise NumericalError(f"training loss became {loss} at step {step}; lower --lr "
                                 "or raise --warmup")
        grads, norm = clip_by_global_norm(grads, options.clip, in_place=True)
        lr = learning_rate(step, options.steps, options.lr, options.warmup, options.min_lr,
                           options.schedule)
        adamw_step(params, grads, state, lr, (options.beta1, options.beta2), options.eps,
                   options.weight_decay)
        for k, keep in masks.items():
            params[k] *= keep
        record = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm,
                  "tokens": (step + 1) * tokens_per_step,
                  "elapsed": time.perf_counter() - started}
        last = step + 1 == end
        if val_windows is not None and (last or (options.eval_every
                                                 and (step + 1) % options.eval_every == 0)):
            record["val_loss"] = evaluate_loss(model.replace(params=params), val_windows)
        history.append(record)
        bar.set_postfix(loss=f"{loss:.3f}", **({"val": f"{record['val_loss']:.3f}"}
                                               if "val_loss" in record else {}))
        if out is not None and (last or (options.save_every
                                         and (step + 1) % options.save_every == 0)):
            _save_checkpoint(out, model, params, state, history, options)
    bar.close()
    return model.replace(params=params), history
