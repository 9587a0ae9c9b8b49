"""The layers every family is built from, each forward beside its backward (as llm.c's
`train_gpt2.c` pairs `layernorm_forward` with `layernorm_backward`).

Each `<layer>_forward(...)` returns `(y, cache)`: the output and the few arrays its
backward needs, named in a small record. Each `<layer>_backward(dy, cache)` starts
by recalling the forward and returns the gradient of the loss with respect to every
input, in the same order. The plain names the inference forward uses (`linear`,
`layer_norm`, `rms_norm`, `gelu_tanh`, `silu`, `apply_rope`, `attention`) are the
same functions without the cache: there is one implementation of each layer.

Two layers have a fast formulation because prefill speed depends on them:
`attention` (queries taken in blocks, so the masked upper triangle is mostly never
computed) and `gelu_tanh` (evaluated inside one buffer). Beside each sits the
textbook one-liner a student reads first (`attention_reference`,
`gelu_tanh_reference`); tests/test_core.py checks the two agree.

Notation: for y = f(x), `dy` is ∂loss/∂y (same shape as y) and `dx` = (∂y/∂x)ᵀ dy.
Shapes use the legend of `minislm.config` (B, T, C, H, K, G, D, F, V); a leading
`...` means any number of batch axes. Everything stays in the dtype of its input
(float32 by default): scalars are Python floats, which NumPy 2 treats as "weak"
and never upcasts with. Each pair is checked on its own against central finite
differences in float64 (tests/test_backward.py), before the whole model is
checked against torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

ATTENTION_BLOCK = 128     # queries per attention block (see `attention_forward`)


# ---------------------------------------------------------------------- linear
@dataclass
class LinearCache:
    """What `linear_backward` needs: the input, the weight, whether there is a bias, the layout."""
    x: np.ndarray                 # the input [..., in]
    W: object                     # the weight (an array, or a stored-weight object)
    has_bias: bool
    orientation: str              # "out_in" (nn.Linear) or "in_out" (GPT-2 Conv1D)


def linear_forward(x, W, b=None, orientation="out_in"):
    """y = x Wᵀ + b for W stored (out, in) (nn.Linear), y = x W + b for (in, out) (Conv1D).

    W that is not an ndarray (a quantized or LoRA-wrapped weight, see
    `minislm.model.weights.StoredWeight`) computes its own product with
    `W.linear(x)`; its backward is `W.linear_backward(x, dy)`.
    """
    if isinstance(W, np.ndarray):
        y = x @ (W.T if orientation == "out_in" else W)                 # [..., out]
    else:
        y = W.linear(x)
    if b is not None:
        y = y + b
    return y, LinearCache(x, W, b is not None, orientation)


def linear_backward(dy, cache: LinearCache, need_dW=True):
    """Forward was y = x Wᵀ + b (out_in) or y = x W + b (in_out).

        dx = dy W          (out_in)      dx = dy Wᵀ        (in_out)
        dW = dyᵀ x  (out, in)            dW = xᵀ dy  (in, out)
        db = Σ_rows dy

    Returns (dx, dW, db); db is None without a bias, dW is None when not
    `need_dW` (a frozen weight: the costly dW product is skipped). For a weight
    object, dW is the dict of gradients `W.linear_backward(x, dy)` returned.
    """
    x, W = cache.x, cache.W
    db = dy.reshape(-1, dy.shape[-1]).sum(0) if cache.has_bias else None
    if not isinstance(W, np.ndarray):
        if not hasattr(W, "linear_backward"):
            raise InputError(f"weight object {type(W).__name__} has no linear_backward(x, dy); "
                             "it cannot be trained through (dequantize it or wrap it in LoRA)")
        dx, dW = W.linear_backward(x, dy)
        return dx, dW, db
    dx = dy @ (W if cache.orientation == "out_in" else W.T)             # [..., in]
    dW = None
    if need_dW:
        x2 = x.reshape(-1, x.shape[-1])                                  # [N, in]
        dy2 = dy.reshape(-1, dy.shape[-1])                               # [N, out]
        dW = dy2.T @ x2 if cache.orientation == "out_in" else x2.T @ dy2
    return dx, dW, db


def linear(x, W, b=None, orientation="out_in"):
    """y = x Wᵀ + b (out_in) or x W + b (in_out): `linear_forward` without the cache."""
    return linear_forward(x, W, b, orientation)[0]


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


# ----------------------------------------------------------- LayerNorm, RMSNorm
@dataclass
class NormCache:
    """What a norm's backward needs: x̂ = (x − μ)·r (RMSNorm x·r), r = 1/√(σ² + ε), gain w."""
    xhat: np.ndarray              # the normalised input [..., C]
    r: np.ndarray                 # 1 / √(σ² + ε) [..., 1]
    w: np.ndarray                 # the gain [C]


def layer_norm_forward(x, w, b, eps, keep=True):
    """y = x̂ · w + b with x̂ = (x − μ) · r, r = 1/√(σ² + ε), μ and σ² over the last axis C.

    keep=False (inference): no cache, and x − μ is divided by √(σ² + ε) rather than
    multiplied by r — the same number to the last bit or one off; each forward keeps
    the rounding it has always had, so printed results do not move.
    """
    mu = x.mean(-1, keepdims=True)                                       # [..., 1]
    xc = x - mu
    sigma = np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)             # [..., 1]
    if not keep:
        return xc / sigma * w + b, None
    r = 1.0 / sigma
    xhat = xc * r                                                        # [..., C]
    return xhat * w + b, NormCache(xhat, r, w)


def layer_norm_backward(dy, cache: NormCache):
    """Forward was y = x̂ w + b, x̂ = (x − μ) r.

        dx̂ = dy ⊙ w
        dx  = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))     (means over C)
        dw  = Σ_rows dy ⊙ x̂,   db = Σ_rows dy
    """
    xhat, r = cache.xhat, cache.r
    C = xhat.shape[-1]
    dxhat = dy * cache.w
    dx = r * (dxhat - dxhat.mean(-1, keepdims=True)
              - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    dw = (dy * xhat).reshape(-1, C).sum(0)
    db = dy.reshape(-1, C).sum(0)
    return dx, dw, db


def layer_norm(x, w, b, eps):
    """LayerNorm: y = (x − μ) / √(σ² + ε) · w + b, statistics over the last axis C."""
    return layer_norm_forward(x, w, b, eps, keep=False)[0]


def rms_norm_forward(x, w, eps, keep=True):
    """y = x̂ · w with x̂ = x · r, r = 1/√(mean(x²) + ε) over the last axis C
    (keep=False: no cache, x divided by the root, as in `layer_norm_forward`)."""
    rms = np.sqrt((x * x).mean(-1, keepdims=True) + eps)                 # [..., 1]
    if not keep:
        return x / rms * w, None
    r = 1.0 / rms
    xhat = x * r
    return xhat * w, NormCache(xhat, r, w)


def rms_norm_backward(dy, cache: NormCache):
    """Forward was y = x̂ w, x̂ = x r.

        dx̂ = dy ⊙ w
        dx  = r · (dx̂ − x̂ · mean(dx̂ ⊙ x̂))     (LayerNorm without the centring term)
        dw  = Σ_rows dy ⊙ x̂
    """
    xhat, r = cache.xhat, cache.r
    C = xhat.shape[-1]
    dxhat = dy * cache.w
    dx = r * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    dw = (dy * xhat).reshape(-1, C).sum(0)
    return dx, dw


def rms_norm(x, w, eps):
    """RMSNorm: y = x / √(mean(x²) + ε) · w (no centring, no bias)."""
    return rms_norm_forward(x, w, eps, keep=False)[0]


# ------------------------------------------------------------------- GELU-tanh
GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh_reference(x):
    """GELU, tanh approximation, as the paper writes it: ½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * (x * x * x))))


def gelu_tanh_forward(x, keep=True):
    """y = ½ x (1 + t),  t = tanh u,  u = √(2/π) (x + 0.044715 x³)  (GPT-2's `gelu_new`).

    Fast form of `gelu_tanh_reference`: t is evaluated inside one buffer (a chain
    of temporaries the size of x was 3.7× slower at [512, 3072]).
    """
    t = x * x
    t *= x                                   # x³
    t *= 0.044715
    t += x                                   # x + 0.044715x³
    t *= GELU_C                              # u
    np.tanh(t, out=t)                        # t = tanh u
    y = t + 1.0
    y *= x
    y *= 0.5
    return y, ((x, t) if keep else None)


def gelu_tanh_backward(dy, cache):
    """Forward was y = ½ x (1 + t), t = tanh u, u = √(2/π)(x + 0.044715 x³).

        dy/dx = ½ (1 + t) + ½ x (1 − t²) · √(2/π) (1 + 3 · 0.044715 x²)
    """
    x, t = cache
    du_dx = GELU_C * (1.0 + (3.0 * 0.044715) * (x * x))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


def gelu_tanh(x):
    """GELU-tanh: `gelu_tanh_forward` without the cache."""
    return gelu_tanh_forward(x, keep=False)[0]


# ------------------------------------------------------------------------ SiLU
def silu_forward(x, keep=True):
    """y = x σ(x), σ(x) = 1 / (1 + e^(−x)) (keep=False: no cache, x divided by 1 + e^(−x))."""
    if not keep:
        return x / (1.0 + np.exp(-x)), None
    s = 1.0 / (1.0 + np.exp(-x))
    return x * s, (x, s)


def silu_backward(dy, cache):
    """Forward was y = x σ(x):  dy/dx = σ(x) (1 + x (1 − σ(x)))."""
    x, s = cache
    return dy * (s * (1.0 + x * (1.0 - s)))


def silu(x):
    """SiLU (swish): x · σ(x)."""
    return silu_forward(x, keep=False)[0]


ACTIVATIONS = {"gelu_tanh": (gelu_tanh_forward, gelu_tanh_backward),
               "silu": (silu_forward, silu_backward)}


# --------------------------------------------------------------- gated MLP (GLU)
def glu_forward(g, u, act="silu", keep=True):
    """h = act(g) ⊙ u: LLaMA's SwiGLU (act = SiLU), Gemma's GeGLU (act = GELU-tanh)."""
    a, act_cache = ACTIVATIONS[act][0](g, keep)
    return a * u, ((a, u, act, act_cache) if keep else None)


def glu_backward(dh, cache):
    """Forward was h = a ⊙ u, a = act(g):  du = dh ⊙ a,  dg = act'(g) (dh ⊙ u)."""
    a, u, act, act_cache = cache
    return ACTIVATIONS[act][1](dh * u, act_cache), dh * a


def swiglu_forward(g, u):
    """h = SiLU(g) ⊙ u (LLaMA's gated MLP, before the down projection)."""
    return glu_forward(g, u, "silu")


swiglu_backward = glu_backward


def softmax(z, axis=-1):
    """softmax(z)_i = e^(z_i − max z) / Σ_j e^(z_j − max z) along `axis`."""
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------------ RoPE
def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None) -> np.ndarray:
    """Inverse frequencies ω_i = θ^(−2i/D), i = 0 … D/2−1, with optional scaling.

    Computed in float32, as transformers does even for a float64 model, so the
    two agree to the last bit of the angle tables.

    `linear`: ω_i / factor. `llama3` (Llama 3.1+): wavelengths λ_i = 2π/ω_i longer than
    original_ctx/low_freq_factor are slowed by `factor`; shorter than
    original_ctx/high_freq_factor are kept; in between they are blended with
    s = (original_ctx/λ_i − low) / (high − low):  ω_i' = (1 − s)·ω_i/factor + s·ω_i.
    """
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    inv_freq = np.float32(1.0) / (np.float32(theta) ** exponent)
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_ctx = scaling["original_max_position_embeddings"]
        wavelen = np.float32(2 * math.pi) / inv_freq
        slowed = np.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
        s = (old_ctx / wavelen - low) / (high - low)
        blended = (1 - s) * slowed / factor + s * slowed
        medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
        inv_freq = np.where(medium, blended, slowed)
    return inv_freq.astype(np.float32)


def rope_tables(positions, inv_freq, dtype):
    """cos, sin tables [T, D] for the split-halves layout HF LLaMA uses (angles repeated twice)."""
    angles = np.asarray(positions, dtype=np.float32)[:, None] * inv_freq[None, :]  # [T, D/2]
    angles = np.concatenate([angles, angles], axis=-1)                               # [T, D]
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


def rotate_half(x):
    """[x1, x2] -> [−x2, x1] on the last axis (pairs are (i, i + D/2), not adjacent)."""
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


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


def apply_rope(x, cos, sin):
    """x' = x·cos + rotate_half(x)·sin, x [B, heads, T, D], cos/sin [T, D]."""
    return rope_forward(x, cos, sin)[0]


# ------------------------------------------------------------------- attention
def attention_reference(q, k, v, q_start: int = 0):
    """The textbook: softmax(q kᵀ / √D + causal mask) v, each query head reading KV head h // G.

    q [B, H, T, D]; k, v [B, K, S, D]; query t sits at position q_start + t.
    """
    G = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)               # [B, H, S, D]
    future = np.arange(k.shape[2])[None, :] > q_start + np.arange(q.shape[2])[:, None]
    return softmax(q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
                   + np.where(future, -np.inf, 0.0).astype(q.dtype)) @ v


@dataclass
class AttentionCache:
    """What `attention_backward` needs: q, k, v, the weights p, the scale, the capped scores."""
    q: np.ndarray                 # [B, H, T, D]
    k: np.ndarray                 # [B, K, S, D]
    v: np.ndarray                 # [B, K, S, D]
    p: np.ndarray                 # [B, K, G, T, S] attention weights (0 where masked)
    scale: float
    capped: np.ndarray | None     # tanh(s / cap) [B, K, G, T, S] when soft-capping


def attention_forward(q, k, v, q_start: int = 0, keep: bool = True, scale: float | None = None,
                      window: int | None = None, softcap: float | None = None,
                      block: int | None = None):
    """Causal scaled dot-product attention with grouped KV heads; (o, cache).

    q [B, H, T, D]; k, v [B, K, S, D] with H = K·G (query head h reads KV head h // G).
    Query t sits at absolute position q_start + t and sees keys 0 … q_start + t
    (the last `window` of them when a sliding window is given).
        s = q kᵀ · scale  (scale = 1/√D unless given),  s = cap · tanh(s / cap) if softcap,
        p = softmax(s + mask),  o = p v   -> [B, H, T, D]

    keep=True (training): the weights p [B, K, G, T, S] are kept for the backward, so
    they are computed whole: the G query heads of a KV head stacked along the rows,
    one product of [G·T, D] by [D, S] per KV head. keep=False (inference, cache None):
    the fast form of `attention_reference`, queries taken `block` at a time (default
    ATTENTION_BLOCK): a block of queries a … b−1 only needs the keys up to
    q_start + b − 1, so the scores never hold the masked upper triangle beyond one
    block (about half the work and memory at T = 512; 2× faster there).
    """
    B, H, T, D = q.shape
    K, S = k.shape[1], k.shape[2]
    G = H // K
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    if not keep:
        return _attention_blocked(q, k, v, q_start, scale, window, softcap,
                                  block or ATTENTION_BLOCK), None
    s = (q.reshape(B, K, G * T, D) @ k.swapaxes(-1, -2)) * scale        # [B, K, G·T, S]
    capped = None
    if softcap:
        capped = np.tanh(s / softcap)
        s = capped * softcap
        capped = capped.reshape(B, K, G, T, S)
    s = s.reshape(B, K, G, T, S)
    s[..., _hidden_keys(q_start, T, S, window)] = -np.inf
    s -= s.max(-1, keepdims=True)
    p = np.exp(s, out=s)
    p /= p.sum(-1, keepdims=True)                                        # [B, K, G, T, S]
    o = (p.reshape(B, K, G * T, S) @ v).reshape(B, H, T, D)              # [B, H, T, D]
    return o, AttentionCache(q, k, v, p, scale, capped)


def _hidden_keys(q_start, T, S, window, a=0, lo=0):
    """[T, S − lo] mask of the keys lo … S − 1 that queries a … a + T − 1 (at positions
    q_start + a …) may not see: those after the query, and those that left its window."""
    keys = np.arange(lo, S)[None, :]
    pos = (q_start + np.arange(a, a + T))[:, None]
    hidden = keys > pos
    if window is not None:
        hidden |= keys <= pos - window
    return hidden


def _attention_blocked(q, k, v, q_start, scale, window, softcap, block):
    """`attention_forward` for inference, `block` queries at a time (see there)."""
    B, H, T, D = q.shape
    K, S = k.shape[1], k.shape[2]
    G = H // K
    qg = q.reshape(B, K, G, T, D)                                  # [B, K, G, T, D]
    kt = k[:, :, None].swapaxes(-1, -2)                            # [B, K, 1, D, S]
    vg = v[:, :, None]                                             # [B, K, 1, S, D]
    out = np.empty((B, K, G, T, D), dtype=np.result_type(q, k, v))
    for a in range(0, T, block):
        b = min(a + block, T)
        S_b = min(S, q_start + b)                                  # keys the block can see
        lo = 0 if window is None else max(0, q_start + a - window + 1)
        scores = qg[:, :, :, a:b] @ kt[..., lo:S_b]                # [B, K, G, b−a, S_b−lo]
        scores *= scale
        if softcap:
            scores /= softcap
            np.tanh(scores, out=scores)
            scores *= softcap
        if b - a > 1 or window is not None:
            hidden = _hidden_keys(q_start, b - a, S_b, window, a, lo)
            scores += np.where(hidden, -np.inf, 0.0).astype(scores.dtype)
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)                    # softmax over the keys
        np.matmul(scores, vg[:, :, :, lo:S_b], out=out[:, :, :, a:b])
    return out.reshape(B, H, T, D)


def attention_backward(do, cache: AttentionCache):
    """Forward was s = q kᵀ · scale (soft-capped: c = cap · tanh(s / cap)), p = softmax(c + mask),
    o = p v (per KV group).

        dv = pᵀ do                       (summed over the G query heads of a KV head)
        dp = do vᵀ
        dc = p ⊙ (dp − Σ_j dp ⊙ p)       (softmax backward; masked entries have p = 0)
        ds = dc ⊙ (1 − tanh²(s / cap))   (soft-capping; ds = dc without it)
        dq = ds k · scale,   dk = dsᵀ q · scale  (summed over the G query heads)
    Returns (dq, dk, dv).
    """
    q, k, v = cache.q, cache.k, cache.v
    B, H, T, D = q.shape
    K, S = k.shape[1], k.shape[2]
    G = H // K
    p = cache.p.reshape(B, K, G * T, S)                                  # [B, K, G·T, S]
    dog = do.reshape(B, K, G * T, D)                                     # [B, K, G·T, D]
    dv = p.swapaxes(-1, -2) @ dog                                        # [B, K, S, D]
    dp = dog @ v.swapaxes(-1, -2)                                        # [B, K, G·T, S]
    ds = dp
    ds -= (dp * p).sum(-1, keepdims=True)
    ds *= p
    if cache.capped is not None:
        t = cache.capped.reshape(B, K, G * T, S)
        ds *= 1.0 - t * t
    ds *= cache.scale
    dq = (ds @ k).reshape(B, H, T, D)                                    # [B, H, T, D]
    dk = ds.swapaxes(-1, -2) @ q.reshape(B, K, G * T, D)                 # [B, K, S, D]
    return dq, dk, dv


def attention(q, k, v, q_start: int = 0, block: int | None = None, scale: float | None = None,
              window: int | None = None, softcap: float | None = None):
    """Causal attention for inference: `attention_forward` without keeping the weights."""
    return attention_forward(q, k, v, q_start, keep=False, scale=scale, window=window,
                             softcap=softcap, block=block)[0]
