"""The decoder forward pass of both families, with an optional KV cache.

GPT-2 block (pre-norm, learned positions):
    x₀ = E[ids] + P[positions]
    a  = LN₁(x);  q, k, v = split(a W_attn + b);  x = x + Attn(q, k, v) W_o + b_o
    m  = LN₂(x);  x = x + GELU_tanh(m W_fc + b_fc) W_proj + b_proj
    logits = LN_f(x) Eᵀ                                   (tied head)

LLaMA block (pre-norm RMSNorm, RoPE, GQA, SwiGLU):
    x₀ = E[ids]
    a  = RMS₁(x);  q = RoPE(a W_qᵀ), k = RoPE(a W_kᵀ), v = a W_vᵀ;  x = x + Attn(q, k, v) W_oᵀ
    m  = RMS₂(x);  x = x + (SiLU(m W_gateᵀ) ⊙ m W_upᵀ) W_downᵀ
    logits = RMS_f(x) W_headᵀ                             (W_head = E when tied)

`layers` runs any sequence of block indices (e.g. ``[0, 1, 2, 2, 3]`` repeats
block 2 without copying weights — the Franken-LLaMA experiment); the KV cache
has one slot per entry of that sequence.

`observer(name, x)` is called with the input of every linear layer (named by
its checkpoint weight name) — calibration for pruning and quantization hooks
in here without a second forward implementation.

`check_numerics=True` (opt-in: it costs a pass over every activation) raises
NumericalError at the first linear whose input holds NaN/Inf, or the first
block whose output does, naming that layer — e.g. a weight so large that
float32 overflows.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, NumericalError
from . import families
from .cache import KVCache
from .layers import apply_rope, attention, gelu_tanh, layer_norm, linear, rms_norm, \
    rope_inv_freq, rope_tables, silu


def check_ids(model, input_ids) -> np.ndarray:
    """input_ids as an int64 [B, T] array, every id inside the vocabulary."""
    try:
        ids = np.asarray(input_ids)
    except (ValueError, TypeError, OverflowError):     # ragged lists, unconvertible objects
        raise InputError("input_ids must be a rectangular [B, T] array of token ids") from None
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise InputError(f"input_ids must be a non-empty [B, T] array of token ids, "
                         f"found shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        else:
            raise InputError(f"input_ids must be integers, found dtype {ids.dtype}")
    V = model.config.vocab_size
    if ids.min() < 0 or ids.max() >= V:
        raise InputError(f"token ids must lie in [0, {V}) (vocab_size of the model), "
                         f"found min {ids.min()} max {ids.max()}")
    return ids.astype(np.int64, copy=False)


def check_finite(what: str, x: np.ndarray) -> None:
    """NumericalError naming `what` if x holds NaN or Inf."""
    finite = np.isfinite(x)
    if not finite.all():
        raise NumericalError(f"NaN/Inf in activations: {what} has {x.size - int(finite.sum())} "
                             f"of {x.size} values not finite (overflowing or corrupted weights "
                             "before this point?)")


def _checking(observer):
    """An observer that checks every linear input, then calls `observer`."""
    def check(name, x):
        check_finite(f"the input of '{name}'", x)
        if observer is not None:
            observer(name, x)
    return check


def _lin(model, name, x, observer=None):
    if observer is not None:
        observer(name, x)
    P = model.params
    bias = P.get(name[: -len("weight")] + "bias")
    orientation = "in_out" if model.config.family == "gpt2" else "out_in"
    return linear(x, P[name], bias, orientation)


def gpt2_block(model, i, x, start, cache=None, slot=None, observer=None):
    """One GPT-2 block on x [B, T, C]; positions start at `start`."""
    cfg, P = model.config, model.params
    p = families.block_prefix(cfg, model.prefix, i)
    B, T, C = x.shape
    H, D = cfg.n_head, cfg.head_dim
    a = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.norm_eps)
    qkv = _lin(model, p + "attn.c_attn.weight", a, observer)                # [B, T, 3C]
    q, k, v = (qkv[..., j * C:(j + 1) * C].reshape(B, T, H, D).transpose(0, 2, 1, 3)
               for j in range(3))                                            # [B, H, T, D]
    if cache is not None:
        k, v = cache.update(slot, k, v)                                      # [B, H, S, D]
    o = attention(q, k, v, start).transpose(0, 2, 1, 3).reshape(B, T, C)
    x = x + _lin(model, p + "attn.c_proj.weight", o, observer)
    m = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.norm_eps)
    h = gelu_tanh(_lin(model, p + "mlp.c_fc.weight", m, observer))          # [B, T, F]
    return x + _lin(model, p + "mlp.c_proj.weight", h, observer)


def llama_block(model, i, x, start, rope, cache=None, slot=None, observer=None):
    """One LLaMA block on x [B, T, C]; rope = (cos, sin) tables [T, D] for these positions."""
    cfg, P = model.config, model.params
    p = families.block_prefix(cfg, model.prefix, i)
    B, T, C = x.shape
    H, K, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    a = rms_norm(x, P[p + "input_layernorm.weight"], cfg.norm_eps)
    q = _lin(model, p + "self_attn.q_proj.weight", a, observer).reshape(B, T, H, D)
    k = _lin(model, p + "self_attn.k_proj.weight", a, observer).reshape(B, T, K, D)
    v = _lin(model, p + "self_attn.v_proj.weight", a, observer).reshape(B, T, K, D)
    cos, sin = rope
    q = apply_rope(q.transpose(0, 2, 1, 3), cos, sin)                        # [B, H, T, D]
    k = apply_rope(k.transpose(0, 2, 1, 3), cos, sin)                        # [B, K, T, D]
    v = v.transpose(0, 2, 1, 3)
    if cache is not None:
        k, v = cache.update(slot, k, v)                                      # [B, K, S, D]
    o = attention(q, k, v, start).transpose(0, 2, 1, 3).reshape(B, T, H * D)
    x = x + _lin(model, p + "self_attn.o_proj.weight", o, observer)
    m = rms_norm(x, P[p + "post_attention_layernorm.weight"], cfg.norm_eps)
    g = _lin(model, p + "mlp.gate_proj.weight", m, observer)                 # [B, T, F]
    u = _lin(model, p + "mlp.up_proj.weight", m, observer)                   # [B, T, F]
    return x + _lin(model, p + "mlp.down_proj.weight", silu(g) * u, observer)


def rope_of(cfg, positions, dtype):
    """RoPE cos, sin tables [T, D] of a LLaMA config at the given positions (derived
    from the config on every call: a few dozen frequencies, microseconds)."""
    return rope_tables(positions, rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
                       dtype)


def forward(model, input_ids, cache: KVCache | None = None, layers=None, observer=None,
            hidden_states: list | None = None, check_numerics: bool = False,
            last_only: bool = False):
    """Logits [B, T, V] for input_ids [B, T] (a 1-D input gives [T, V]).

    cache: a `KVCache`; positions continue from `cache.length` and the new keys
    and values are appended. layers: block order (default 0 … L−1).
    hidden_states: if a list is given, the residual stream before the first block
    and after every block is appended to it (before the final norm).
    check_numerics: raise NumericalError naming the first layer that sees NaN/Inf.
    last_only: logits of the last position only, [B, 1, V] (what generation needs;
    the LM head is 16 % of a GPT-2-124M prefill of 512 tokens).
    """
    ids = check_ids(model, input_ids)
    one_d = np.ndim(input_ids) == 1
    cfg, P = model.config, model.params
    B, T = ids.shape
    layers = list(range(cfg.n_layer)) if layers is None else list(layers)
    for i in layers:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < cfg.n_layer:
            raise InputError(f"layers: block index {i!r} out of range for a {cfg.n_layer}-layer "
                             "model (expected integers in [0, n_layer))")
    if check_numerics:
        observer = _checking(observer)
    start = cache.length if cache is not None else 0
    if start + T > cfg.max_position:
        raise InputError(f"sequence of {start + T} tokens exceeds the model's "
                         f"max_position ({cfg.max_position})")
    emb = P[families.embedding_name(cfg, model.prefix)]
    x = emb[ids]                                                             # [B, T, C]
    if cfg.family == "gpt2":
        x = x + P[model.prefix + "wpe.weight"][start:start + T]
    else:
        rope = rope_of(cfg, np.arange(start, start + T), x.dtype)
    if cache is not None:
        cache.reserve(len(layers), start + T)
    if hidden_states is not None:
        hidden_states.append(x)
    for slot, i in enumerate(layers):
        if cfg.family == "gpt2":
            x = gpt2_block(model, i, x, start, cache, slot, observer)
        else:
            x = llama_block(model, i, x, start, rope, cache, slot, observer)
        if check_numerics:
            check_finite(f"the output of block {i} "
                         f"('{families.block_prefix(cfg, model.prefix, i)}')", x)
        if hidden_states is not None:
            hidden_states.append(x)
    if cache is not None:
        cache.length = start + T
    if cfg.family == "gpt2":
        x = layer_norm(x, P[model.prefix + "ln_f.weight"], P[model.prefix + "ln_f.bias"],
                       cfg.norm_eps)
    else:
        x = rms_norm(x, P["model.norm.weight"], cfg.norm_eps)
    head = families.lm_head_name(cfg, model.prefix)
    if last_only:
        x = x[:, -1:]                                                        # [B, 1, C]
    if observer is not None:
        observer(head, x)
    logits = linear(x, P[head], None, "out_in")                              # [B, T, V]
    if check_numerics:
        check_finite(f"the logits (output of '{head}')", logits)
    return logits[0] if one_d else logits
