"""AdamW, global-norm gradient clipping and learning-rate schedules.

AdamW (Loshchilov & Hutter 2019, Algorithm 2), for every parameter θ with
gradient g at step t = 1, 2, …:

    m ← β₁ m + (1 − β₁) g                 first moment
    v ← β₂ v + (1 − β₂) g²                second moment
    m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   bias correction (m, v start at 0)
    θ ← θ − η (m̂ / (√v̂ + ε) + λ θ)        decoupled weight decay λ (not added to g)

Weight decay applies to matrices (linear weights, embeddings) only; norm gains
and biases are not decayed (nanoGPT's grouping).

Clipping (Pascanu et al. 2013): if ‖g‖₂ over all parameters exceeds c, every
gradient is scaled by c / ‖g‖₂.

Schedule: η rises linearly from 0 to η_max over the warm-up steps, then decays
to η_min following a half cosine (or a straight line, or stays constant).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class AdamWState:
    """m and v for every trained parameter, and the number of steps taken."""
    m: dict = field(default_factory=dict)
    v: dict = field(default_factory=dict)
    step: int = 0
    scratch: np.ndarray | None = field(default=None, repr=False)   # reused work space

    def work_array(self, like: np.ndarray) -> np.ndarray:
        """A scratch array shaped like `like`, reusing one buffer across parameters and
        steps (a fresh 150 MB array per step costs more in page faults than the math)."""
        if self.scratch is None or self.scratch.size < like.size or \
                self.scratch.dtype != like.dtype:
            self.scratch = np.empty(like.size, dtype=like.dtype)
        return self.scratch[:like.size].reshape(like.shape)


def decays(name: str, value) -> bool:
    """Weight decay for matrices (ndim ≥ 2), not for norm gains and biases."""
    return np.ndim(value) >= 2


def adamw_step(params: dict, grads: dict, state: AdamWState, lr: float, betas=(0.9, 0.95),
               eps: float = 1e-8, weight_decay: float = 0.0) -> None:
    """One AdamW update of the arrays of `params` named in `grads`, in place.

    `params` here are the trainer's own working copies (the input model is never
    touched); `state` is updated in place too.
    """
    b1, b2 = betas
    state.step += 1
    t = state.step
    c1 = 1.0 / (1.0 - b1 ** t)                        # bias corrections, Python floats
    c2 = 1.0 / (1.0 - b2 ** t)
    for name, g in grads.items():
        theta = params[name]
        if name not in state.m:
            state.m[name] = np.zeros_like(theta)
            state.v[name] = np.zeros_like(theta)
        m, v = state.m[name], state.v[name]
        tmp = state.work_array(theta)         # the only work space: no temporaries
        m *= b1
        m += np.multiply(g, 1.0 - b1, out=tmp)                       # m = β₁m + (1−β₁)g
        v *= b2
        np.multiply(g, g, out=tmp)
        v += np.multiply(tmp, 1.0 - b2, out=tmp)                     # v = β₂v + (1−β₂)g²
        if weight_decay and decays(name, theta):
            theta *= 1.0 - lr * weight_decay          # θ − ηλθ, decoupled from the gradient
        np.sqrt(np.multiply(v, c2, out=tmp), out=tmp)                # √v̂
        tmp += eps
        np.divide(m, tmp, out=tmp)                                   # m / (√v̂ + ε)
        theta -= np.multiply(tmp, lr * c1, out=tmp)                  # − η m̂ / (√v̂ + ε)


def global_norm(grads: dict) -> float:
    """‖g‖₂ over every gradient array (accumulated in float64)."""
    return math.sqrt(sum(float(np.vdot(g, g).real) for g in grads.values()))


def clip_by_global_norm(grads: dict, max_norm: float | None,
                        in_place: bool = False) -> tuple[dict, float]:
    """(gradients scaled so ‖g‖₂ ≤ max_norm, the norm before clipping); None = no clipping.

    The input arrays are left alone unless `in_place` (for a caller that owns them).
    """
    norm = global_norm(grads)
    if max_norm is None or norm <= max_norm or norm == 0.0:
        return grads, norm
    scale = max_norm / norm
    if in_place:
        for g in grads.values():
            g *= scale
        return grads, norm
    return {name: g * scale for name, g in grads.items()}, norm


def learning_rate(step: int, total_steps: int, peak: float, warmup: int = 0,
                  minimum: float = 0.0, schedule: str = "cosine") -> float:
    """η at `step` (0-based): linear warm-up over `warmup` steps, then the schedule to `minimum`."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"learning-rate schedule must be one of {SCHEDULES}, found {schedule!r}")
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total_steps <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup - 1))   # 0 -> 1
    if schedule == "linear":
        return peak + (minimum - peak) * progress
    return minimum + 0.5 * (peak - minimum) * (1.0 + math.cos(math.pi * progress))
