"""The one optimisation loop: batches -> loss and gradients -> clip -> AdamW, resumable.

Training from scratch (`trainer.train`), fine-tuning (`adapt.finetune`) and
distillation (`adapt.distill`) all run `training_loop`; they differ only in
the tensors they train and in `loss_fn`, which draws a batch and returns its
loss and gradients. One optimiser step (of A = `grad_accum` micro-batches):

    g = (1/A) Σ_a ∇ℓ(θ; batch_{sA+a})      gradient accumulation
    g ← g · min(1, c/‖g‖₂)                  clipping (c = `clip`)
    θ ← AdamW(θ, g, η(s))                   warm-up + schedule, see optim.py

Batch number sA + a is all `loss_fn` gets, so a run's batches come from its
seed and that number alone: a run resumed from its state (`save_state` /
`load_state`: tensors, AdamW moments, step and history in one file) continues
with exactly the batches, parameters and moments of the uninterrupted run.

A loss or gradient norm that is not finite stops the run with a NumericalError
naming the step, and the tensors are checked before they are returned, so a
diverged run never reaches a checkpoint. The hyper-parameters are checked
before any step (`TrainOptions.validate`): NaN or infinite numbers are refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..checkpoint import atomic_write_text, read_header, read_safetensors, write_safetensors
from ..errors import CheckpointError, ConfigError, NumericalError
from .optim import SCHEDULES, AdamWState, adamw_step, clip_by_global_norm, learning_rate

STATE_FILE = "trainer_state.safetensors"
HISTORY_FILE = "history.json"


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The loop's settings: schedule η(s) over `steps`, AdamW (β₁, β₂, ε, λ), clipping c."""
    steps: int = 1000
    batch_size: int = 16          # B windows (or examples) per micro-batch
    seq_len: int = 128            # T tokens per window (stream training)
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
        """Raise ConfigError for a setting no run can use (counts < 1, NaN/∞, β ∉ [0, 1), …)."""
        for field in ("steps", "batch_size", "seq_len", "grad_accum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"training option '{field}' must be an integer ≥ 1, found "
                                  f"{value!r}")
        if not (_finite(self.lr) and self.lr > 0 and _finite(self.min_lr) and self.min_lr >= 0
                and isinstance(self.warmup, (int, np.integer)) and self.warmup >= 0):
            raise ConfigError(f"learning rates must be positive finite numbers and warm-up "
                              f"≥ 0, found lr={self.lr}, min_lr={self.min_lr}, "
                              f"warmup={self.warmup}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"learning-rate schedule must be one of {SCHEDULES}, found "
                              f"{self.schedule!r}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay must be a finite number ≥ 0, found "
                              f"{self.weight_decay}")
        if not all(_finite(b) and 0 <= b < 1 for b in (self.beta1, self.beta2)) or \
                not (_finite(self.eps) and self.eps > 0):
            raise ConfigError(f"AdamW needs 0 ≤ β < 1 and ε > 0, found beta1={self.beta1}, "
                              f"beta2={self.beta2}, eps={self.eps}")
        if self.clip is not None and not (_finite(self.clip) and self.clip > 0):
            raise ConfigError(f"gradient clipping needs a positive finite norm (or none), "
                              f"found clip={self.clip}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ConfigError(f"the seed must be an integer ≥ 0, found {self.seed!r}")


def _finite(x) -> bool:
    """A real number that is neither NaN nor ±∞ (strings and None are not)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(x)


def check_finite(tensors: dict, what: str = "training") -> None:
    """Raise NumericalError naming the first tensor that holds a NaN or ±∞."""
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            raise NumericalError(f"{what} made '{name}' non-finite (NaN or ∞); nothing is "
                                 "written. Lower the learning rate or raise the warm-up")


def training_loop(tensors: dict, loss_fn, options: TrainOptions, state: AdamWState | None = None,
                  history: list | None = None, end: int | None = None, on_step=None,
                  progress: bool = True, desc: str = "train", leave: bool = True):
    """Run steps state.step … end−1 of `options` on `tensors` (updated in place); returns
    (AdamWState, history).

    loss_fn(tensors, draw) -> (loss, grads): the loss of batch number `draw`
    (= step·A + a) and the gradients of (some of) the tensors, by name.
    history: one record {"step", "loss", "lr", "grad_norm"} per step, appended to
    the given list (a resumed run passes its earlier records).
    on_step(step, record): called after each update, the record already in the
    history; it may add fields (validation loss) and write checkpoints.
    end: stop this session early (the schedule still spans `options.steps`).
    """
    options.validate()
    state = AdamWState() if state is None else state
    history = [] if history is None else history
    A = options.grad_accum
    end = options.steps if end is None else min(options.steps, end)
    bar = tqdm(range(state.step, end), initial=state.step, total=options.steps, desc=desc,
               disable=not progress, unit="step", leave=leave)
    for step in bar:
        grads, loss = None, 0.0
        for a in range(A):
            micro_loss, g = loss_fn(tensors, step * A + a)
            loss += micro_loss / A
            g = {k: v for k, v in g.items() if k in tensors}
            if grads is None:
                grads = g
            else:
                for k in grads:
                    grads[k] += g[k]
        if A > 1:
            grads = {k: g * (1.0 / A) for k, g in grads.items()}
        if not math.isfinite(loss):
            raise NumericalError(f"training loss became {loss} at step {step}; lower --lr "
                                 "or raise --warmup")
        grads, norm = clip_by_global_norm(grads, options.clip, in_place=True)
        if not math.isfinite(norm):
            raise NumericalError(f"the gradient norm became {norm} at step {step}; lower "
                                 "--lr or raise --warmup")
        lr = learning_rate(step, options.steps, options.lr, options.warmup, options.min_lr,
                           options.schedule)
        with np.errstate(over="ignore", invalid="ignore"):    # an overflow is caught below
            adamw_step(tensors, grads, state, lr, (options.beta1, options.beta2), options.eps,
                       options.weight_decay)
        record = {"step": step + 1, "loss": loss, "lr": lr, "grad_norm": norm}
        history.append(record)
        if on_step is not None:
            on_step(step, record)
        bar.set_postfix(loss=f"{loss:.3f}", **({"val": f"{record['val_loss']:.3f}"}
                                               if "val_loss" in record else {}))
    bar.close()
    check_finite(tensors)
    return state, history


# ------------------------------------------------------------------ resumable state
def save_state(out: Path, tensors: dict, state: AdamWState, history: list,
               options: TrainOptions) -> None:
    """out/trainer_state.safetensors (tensors, AdamW moments, step, history, options: one
    file, so a checkpoint is never half old, half new) and out/history.json, atomically."""
    check_finite(tensors)
    out = Path(out)
    arrays = {f"param/{k}": v for k, v in tensors.items()}
    arrays.update({f"adam_m/{k}": v for k, v in state.m.items()})
    arrays.update({f"adam_v/{k}": v for k, v in state.v.items()})
    meta = {"step": state.step, "history": json.dumps(history),
            "options": json.dumps(dataclasses.asdict(options))}
    write_safetensors(out / STATE_FILE, arrays, metadata=meta)
    atomic_write_text(out / HISTORY_FILE, json.dumps(history, indent=1))


def load_state(out: Path, tensors: dict):
    """(tensors, AdamWState, history) from out/trainer_state.safetensors, checked against the
    names, shapes and dtypes of `tensors` (the run's freshly made working copies)."""
    path = Path(out) / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no trainer state to resume from (run without --resume "
                              "first, or point --out at the folder of an earlier run)")
    _, meta, _ = read_header(path)
    arrays = read_safetensors(path)
    loaded = {}
    for name, value in tensors.items():
        key = f"param/{name}"
        if key not in arrays or arrays[key].shape != value.shape:
            raise CheckpointError(f"{path}: tensor '{key}' missing or of another shape than the "
                                  f"model's {value.shape}; was it written for another model?")
        loaded[name] = np.array(arrays[key], dtype=value.dtype)
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
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if kind not in ("adam_m", "adam_v"):
            continue
        if name not in tensors or value.shape != tensors[name].shape:
            raise CheckpointError(f"{path}: optimizer moment '{key}' has no weight of that "
                                  "name and shape in the model; was it written for another "
                                  "model?")
        getattr(state, kind[-1])[name] = np.array(value, dtype=tensors[name].dtype)
    return loaded, state, history
