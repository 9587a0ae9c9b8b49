"""The forward pieces both families are built from: pure functions on arrays.

Shapes use the legend of `minislm.config` (B, T, C, H, K, G, D, F, V).
Everything stays in the dtype of its input (float32 by default): scalars are
Python floats, which NumPy 2 treats as "weak" and never upcasts with.
The backward of each piece sits beside its forward in `minislm.train.backward`.
"""
from __future__ import annotations

import math

import numpy as np

ATTENTION_BLOCK = 128     # queries per attention block (see `attention`)


def linear(x, W, b=None, orientation="out_in"):
    """y = x Wᵀ + b for W stored (out, in) (LLaMA), or y = x W + b for (in, out) (GPT-2 Conv1D).

    W may be a compressed tensor object (quantized weights): it then computes
    its own product with `W.linear(x)`, dequantizing block by block.
    """
    if isinstance(W, np.ndarray):
        y = x @ (W.T if orientation == "out_in" else W)
    else:
        y = W.linear(x)
    if b is not None:
        y = y + b
    return y


def layer_norm(x, w, b, eps):
    """LayerNorm: y = (x − μ) / √(σ² + ε) · w + b, statistics over the last axis C."""
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    """RMSNorm: y = x / √(mean(x²) + ε) · w (no centring, no bias)."""
    ms = (x * x).mean(-1, keepdims=True)
    return x / np.sqrt(ms + eps) * w


def gelu_tanh(x):
    """GELU, tanh approximation (GPT-2's `gelu_new`): ½x(1 + tanh(√(2/π)(x + 0.044715x³))).

    Evaluated inside one buffer u (a chain of temporaries the size of x was 3.7×
    slower at [512, 3072]).
    """
    u = x * x
    u *= x                                   # x³
    u *= 0.044715
    u += x                                   # x + 0.044715x³
    u *= math.sqrt(2.0 / math.pi)
    np.tanh(u, out=u)
    u += 1.0
    u *= x
    u *= 0.5
    return u


def silu(x):
    """SiLU (swish): x · σ(x)."""
    return x / (1.0 + np.exp(-x))


def softmax(z, axis=-1):
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


def apply_rope(x, cos, sin):
    """x' = x·cos + rotate_half(x)·sin, x [B, heads, T, D], cos/sin [T, D]."""
    return x * cos + rotate_half(x) * sin


# ------------------------------------------------------------------- attention
def attention(q, k, v, q_start: int = 0, block: int | None = None):
    """Causal scaled dot-product attention with grouped KV heads.

    q [B, H, T, D]; k, v [B, K, S, D] with H = K·G (query head h reads KV head h // G).
    Query t sits at absolute position q_start + t and sees keys 0 … q_start + t.
    softmax(q kᵀ / √D + mask) v  ->  [B, H, T, D]

    Queries are taken `block` at a time: a block of queries a … b−1 only needs the
    keys 0 … q_start + b − 1, so the scores never hold the masked upper triangle
    beyond one block (about half the work and memory of the full [T, S] scores
    at T = 512; 2× faster there). Each row's softmax is unchanged.
    block defaults to the module's ATTENTION_BLOCK.
    """
    block = block or ATTENTION_BLOCK
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
        scores = qg[:, :, :, a:b] @ kt[..., :S_b]                  # [B, K, G, b−a, S_b]
        scores *= 1.0 / math.sqrt(D)
        if b - a > 1:   # query t may not see keys after position q_start + t
            future = np.arange(S_b)[None, :] > (q_start + np.arange(a, b))[:, None]
            scores += np.where(future, -np.inf, 0.0).astype(scores.dtype)   # [b−a, S_b]
        scores -= scores.max(-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(-1, keepdims=True)                    # softmax over S_b
        np.matmul(scores, vg[:, :, :, :S_b], out=out[:, :, :, a:b])
    return out.reshape(B, H, T, D)
