"""Every layer's forward beside its backward, as in llm.c's `train_gpt2.c`.

Each `<layer>_forward` computes what `minislm.model.layers.<layer>` computes and
also returns a `cache`: the few arrays its backward needs, named explicitly.
Each `<layer>_backward(d_out, cache)` starts by recalling the forward and
returns the gradient of the loss with respect to every input, in the same order.

Notation: for y = f(x), `dy` is ∂loss/∂y (same shape as y) and `dx` is
∂loss/∂x = (∂y/∂x)ᵀ dy. Shapes use the legend of `minislm.config`
(B, T, C, H, K, G, D, F, V); a leading `...` means any number of batch axes.
Everything stays in the dtype of its input (scalars are Python floats).

Each pair is checked on its own against central finite differences in float64
(tests/test_backward.py), before the whole model is checked against torch.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..model.layers import rotate_half


# ---------------------------------------------------------------------- linear
def linear_forward(x, W, b=None, orientation="out_in"):
    """y = x Wᵀ + b for W stored (out, in) (nn.Linear), y = x W + b for (in, out) (Conv1D).

    W that is not an ndarray (a LoRA-wrapped or compressed weight) computes its
    own product with `W.linear(x)`; its backward is `W.linear_backward(x, dy)`.
    """
    if isinstance(W, np.ndarray):
        y = x @ (W.T if orientation == "out_in" else W)                 # [..., out]
    else:
        y = W.linear(x)
    if b is not None:
        y = y + b
    return y, (x, W, b is not None, orientation)


def linear_backward(dy, cache, need_dW=True):
    """Forward was y = x Wᵀ + b (out_in) or y = x W + b (in_out).

        dx = dy W          (out_in)      dx = dy Wᵀ        (in_out)
        dW = dyᵀ x  (out, in)            dW = xᵀ dy  (in, out)
        db = Σ_rows dy

    Returns (dx, dW, db); db is None without a bias, dW is None when not
    `need_dW` (a frozen weight: the costly dW product is skipped). For a weight
    object, dW is the dict of gradients `W.linear_backward(x, dy)` returned.
    """
    x, W, has_bias, orientation = cache
    db = dy.reshape(-1, dy.shape[-1]).sum(0) if has_bias else None
    if not isinstance(W, np.ndarray):
        if not hasattr(W, "linear_backward"):
            raise InputError(f"weight object {type(W).__name__} has no linear_backward(x, dy); "
                             "it cannot be trained through (dequantize it or wrap it in LoRA)")
        dx, dW = W.linear_backward(x, dy)
        return dx, dW, db
    dx = dy @ (W if orientation == "out_in" else W.T)                   # [..., in]
    dW = None
    if need_dW:
        x2 = x.reshape(-1, x.shape[-1])                                  # [N, in]
        dy2 = dy.reshape(-1, dy.shape[-1])                               # [N, out]
        dW = dy2.T @ x2 if orientation == "out_in" else x2.T @ dy2
    return dx, dW, db


# ------------------------------------------------------------------- embedding
def embedding_forward(E, ids):
    """x = E[ids]: rows of the table E [V, C] picked by ids [B, T] -> [B, T, C]."""
    return E[ids], (ids, E.shape)


def embedding_backward(dx, cache, out=None):
    """Forward was x[b, t] = E[ids[b, t]]:  dE[v] = Σ_{(b,t): ids[b,t] = v} dx[b, t].

    A token that occurs n times receives the sum of its n gradients: the rows of
    dx are sorted by token id and each run of equal ids summed (`np.add.reduceat`),
    then added to the rows of the used tokens only. `out`: an existing [V, C]
    gradient to add into (the tied LM head's), instead of a new zero array.
    """
    ids, shape = cache
    dE = np.zeros(shape, dtype=dx.dtype) if out is None else out        # [V, C]
    flat = ids.reshape(-1)                                               # [N]
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    dE[sorted_ids[starts]] += np.add.reduceat(dx.reshape(-1, shape[1])[order], starts, axis=0)
    return dE


# ------------------------------------------------------------------ LayerNorm
def layer_norm_forward(x, w, b, eps):
    """y = x̂ · w + b with x̂ = (x − μ) · r, r = 1/√(σ² + ε), μ and σ² over the last axis C."""
    mu = x.mean(-1, keepdims=True)                                       # [..., 1]
    xc = x - mu
    r = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)           # [..., 1]
    xhat = xc * r                                                        # [..., C]
    return xhat * w + b, (xhat, r, w)


def layer_norm_backward(dy, cache):
    """Forward was y = x̂ w + b, x̂ = (x − μ) r.

        dx̂ = dy ⊙ w
        dx  = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))     (means over C)
        dw  = Σ_rows dy ⊙ x̂,   db = Σ_rows dy
    """
    xhat, r, w = cache
    C = xhat.shape[-1]
    dxhat = dy * w
    dx = r * (dxhat - dxhat.mean(-1, keepdims=True)
              - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    dw = (dy * xhat).reshape(-1, C).sum(0)
    db = dy.reshape(-1, C).sum(0)
    return dx, dw, db


# -------------------------------------------------------------------- RMSNorm
def rms_norm_forward(x, w, eps):
    """y = x̂ · w with x̂ = x · r, r = 1/√(mean(x²) + ε) over the last axis C."""
    r = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)             # [..., 1]
    xhat = x * r
    return xhat * w, (xhat, r, w)


def rms_norm_backward(dy, cache):
    """Forward was y = x̂ w, x̂ = x r.

        dx̂ = dy ⊙ w
        dx  = r · (dx̂ − x̂ · mean(dx̂ ⊙ x̂))     (LayerNorm without the centring term)
        dw  = Σ_rows dy ⊙ x̂
    """
    xhat, r, w = cache
    C = xhat.shape[-1]
    dxhat = dy * w
    dx = r * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    dw = (dy * xhat).reshape(-1, C).sum(0)
    return dx, dw


# ------------------------------------------------------------------- GELU-tanh
GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh_forward(x):
    """y = ½ x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³)."""
    t = np.tanh(GELU_C * (x + 0.044715 * (x * x * x)))
    return 0.5 * x * (1.0 + t), (x, t)


def gelu_tanh_backward(dy, cache):
    """Forward was y = ½ x (1 + t), t = tanh u, u = √(2/π)(x + 0.044715 x³).

        dy/dx = ½ (1 + t) + ½ x (1 − t²) · √(2/π) (1 + 3 · 0.044715 x²)
    """
    x, t = cache
    du_dx = GELU_C * (1.0 + (3.0 * 0.044715) * (x * x))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


# ------------------------------------------------------------------------ SiLU
def silu_forward(x):
    """y = x σ(x), σ(x) = 1 / (1 + e^(−x))."""
    s = 1.0 / (1.0 + np.exp(-x))
    return x * s, (x, s)


def silu_backward(dy, cache):
    """Forward was y = x σ(x):  dy/dx = σ(x) (1 + x (1 − σ(x)))."""
    x, s = cache
    return dy * (s * (1.0 + x * (1.0 - s)))


def swiglu_forward(g, u):
    """h = SiLU(g) ⊙ u (LLaMA's gated MLP, before the down projection)."""
    a, silu_cache = silu_forward(g)
    return a * u, (a, u, silu_cache)


def swiglu_backward(dh, cache):
    """Forward was h = a ⊙ u, a = SiLU(g):  du = dh ⊙ a,  dg = SiLU'(g) (dh ⊙ u)."""
    a, u, silu_cache = cache
    return silu_backward(dh * u, silu_cache), dh * a


# ------------------------------------------------------------------------ RoPE
def rope_forward(x, cos, sin):
    """x' = x ⊙ cos + R(x) ⊙ sin with R = rotate_half: [x₁, x₂] -> [−x₂, x₁].

    x [B, heads, T, D], cos/sin [T, D] (split-halves layout of HF LLaMA).
    """
    return x * cos + rotate_half(x) * sin, (cos, sin)


def rope_backward(dy, cache):
    """Forward was y = x ⊙ cos + R x ⊙ sin, R a fixed linear map with Rᵀ = −R.

        dx = dy ⊙ cos + Rᵀ(dy ⊙ sin) = dy ⊙ cos − R(dy ⊙ sin)

    (a rotation by −θ: the backward of a rotation is its inverse).
    """
    cos, sin = cache
    return dy * cos - rotate_half(dy * sin)


# ------------------------------------------------------------------- attention
def attention_forward(q, k, v):
    """Causal attention with grouped KV heads (training: queries and keys are the same T positions).

    q [B, H, T, D]; k, v [B, K, T, D]; H = K·G, query head h reads KV head h // G.
        s = q kᵀ / √D + causal mask,  p = softmax(s),  o = p v   -> [B, H, T, D]
    The G query heads of one KV head are stacked along the rows, so each KV
    head is one matrix product of [G·T, D] by [D, T].
    """
    B, H, T, D = q.shape
    K = k.shape[1]
    G = H // K
    qg = q.reshape(B, K, G * T, D)                                       # [B, K, G·T, D]
    s = (qg @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(D))                 # [B, K, G·T, T]
    s = s.reshape(B, K, G, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), 1)                     # key after query
    s[..., future] = -np.inf
    s -= s.max(-1, keepdims=True)
    p = np.exp(s, out=s)
    p /= p.sum(-1, keepdims=True)                                        # [B, K, G, T, T]
    p = p.reshape(B, K, G * T, T)
    o = (p @ v).reshape(B, H, T, D)                                      # [B, H, T, D]
    return o, (q, k, v, p)


def attention_backward(do, cache):
    """Forward was s = q kᵀ/√D (masked), p = softmax(s), o = p v (per KV group).

        dv = pᵀ do                       (summed over the G query heads of a KV head)
        dp = do vᵀ
        ds = p ⊙ (dp − Σ_j dp ⊙ p)       (softmax backward; masked entries have p = 0)
        dq = ds k / √D,   dk = dsᵀ q / √D  (summed over the G query heads)
    Returns (dq, dk, dv).
    """
    q, k, v, p = cache
    B, H, T, D = q.shape
    K = k.shape[1]
    G = H // K
    scale = 1.0 / math.sqrt(D)
    dog = do.reshape(B, K, G * T, D)                                     # [B, K, G·T, D]
    dv = p.swapaxes(-1, -2) @ dog                                        # [B, K, T, D]
    dp = dog @ v.swapaxes(-1, -2)                                        # [B, K, G·T, T]
    ds = dp
    ds -= (dp * p).sum(-1, keepdims=True)
    ds *= p
    ds *= scale
    dq = (ds @ k).reshape(B, H, T, D)                                    # [B, H, T, D]
    dk = ds.swapaxes(-1, -2) @ q.reshape(B, K, G * T, D)                 # [B, K, T, D]
    return dq, dk, dv
