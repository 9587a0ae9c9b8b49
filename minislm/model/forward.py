"""The decoder forward pass, as four public steps read from the family tables:

    x, pos = embed(model, ids, start)         x₀ = E[ids] (· √C for Gemma) (+ P[positions] for GPT-2)
    x, _   = block(model, i, x, pos, ...)     for i in layers          (see `block.py`)
    x, _   = final_norm(model, x)
    logits, _ = head(model, x)                logits = x Eᵀ (tied) or x W_headᵀ

GPT-2 (learned positions, LayerNorm, fused q/k/v, GELU-tanh), LLaMA (RMSNorm, RoPE,
GQA, SwiGLU) and the rest differ only in the `families.Family` table the steps read.

`forward_pass` drives the steps once for every caller: inference (`forward`,
generation with a KV cache), the training forward (`keep=True`: each step also
returns the named record its backward needs, and `backward` walks them in
reverse), calibration (`observer`) and the techniques (`layers`, `hidden_states`).

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

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NumericalError
from . import families
from .block import (Grads, LinearRecord, NormRecord, block, block_backward, linear_step,
                    linear_step_backward, norm_step, norm_step_backward)
from .cache import KVCache
from .layers import embedding_backward, rope_inv_freq, rope_tables


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


def check_layers(config, layers) -> list:
    """The block order as a list (default 0 … L−1), every index in range."""
    layers = list(range(config.n_layer)) if layers is None else list(layers)
    for i in layers:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < config.n_layer:
            raise InputError(f"layers: block index {i!r} out of range for a {config.n_layer}-layer "
                             "model (expected integers in [0, n_layer))")
    return layers


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


# ------------------------------------------------------------------ positions
def rope_of(cfg, positions, dtype, layer_type: str = "full_attention"):
    """RoPE cos, sin tables [T, D] of a config at the given positions, for one layer type
    (derived from the config on every call: a few dozen frequencies, microseconds)."""
    theta, scaling = cfg.rope_of_type(layer_type)
    return rope_tables(positions, rope_inv_freq(cfg.head_dim, theta, scaling), dtype)


@dataclass
class Positions:
    """Where the T new tokens sit: absolute positions start … start + T − 1, and the
    RoPE tables of each layer type for those positions (None without RoPE)."""
    start: int
    rope: dict | None

    def rope_of_layer(self, config, i: int):
        """The RoPE (cos, sin) tables for block i's layer type, or None without RoPE."""
        return None if self.rope is None else self.rope[config.layer_type(i)]


def positions(model, start: int, T: int, dtype) -> Positions:
    """The `Positions` of T new tokens from `start`, with RoPE tables per layer type used."""
    cfg = model.config
    if not families.family(cfg).rope:
        return Positions(start, None)
    kinds = set(cfg.layer_types or ("full_attention",))
    return Positions(start, {kind: rope_of(cfg, np.arange(start, start + T), dtype, kind)
                             for kind in kinds})


# ---------------------------------------------------------------- embed / head
def embed_scale(config, dtype) -> np.ndarray | None:
    """Gemma's √C as a scalar of the weights' dtype (transformers rounds it there), else None."""
    if not families.family(config).scaled_embedding:
        return None
    return np.asarray(math.sqrt(config.d_model), dtype=np.float32).astype(dtype)


def embed(model, ids: np.ndarray, start: int = 0):
    """(x₀ [B, T, C], Positions): the residual stream entering the first block."""
    cfg, P = model.config, model.params
    fam = families.family(cfg)
    T = ids.shape[1]
    x = P[model.prefix + fam.embedding][ids]                             # [B, T, C]
    scale = embed_scale(cfg, x.dtype)
    if scale is not None:
        x = x * scale
    if fam.positions:                                                    # learned positions
        x = x + P[model.prefix + fam.positions][start:start + T]
    return x, positions(model, start, T, x.dtype)


def embed_backward(model, dx, ids, grads: Grads) -> None:
    """Reverse of `embed`: dE (scattered into the tied head's gradient if there is one), dP."""
    cfg, P = model.config, model.params
    fam = families.family(cfg)
    if fam.positions and grads.wants(model.prefix + fam.positions):
        name = model.prefix + fam.positions
        dP = np.zeros_like(P[name])                                      # [max_position, C]
        dP[:dx.shape[1]] = dx.sum(0)
        grads.add(name, dP)
    emb = model.prefix + fam.embedding
    if grads.wants(emb):
        scale = embed_scale(cfg, dx.dtype)
        if scale is not None:
            dx = dx * scale
        if cfg.padding_idx is not None:          # the pad token's row gets no lookup gradient
            dx = np.where((ids == cfg.padding_idx)[..., None], 0.0, dx).astype(dx.dtype)
        grads[emb] = embedding_backward(dx, (ids, P[emb].shape), out=grads.get(emb))


def final_norm(model, x, keep=False):
    """The norm before the head; (x, record or None)."""
    return norm_step(model, families.final_norm_name(model.config, model.prefix), x, keep)


@dataclass
class HeadRecord:
    """What the head keeps for its backward: the linear record and the soft-capped tanh, if any."""
    linear: LinearRecord
    capped: np.ndarray | None           # tanh(z / cap) when the logits are soft-capped


def head(model, x, observer=None, keep=False):
    """logits [B, T, V] = x W_headᵀ (W_head = E when tied), soft-capped where the config says."""
    name = families.lm_head_name(model.config, model.prefix)
    logits, rec = linear_step(model, name, x, observer, keep, orientation="out_in")
    cap, capped = model.config.final_softcap, None
    if cap:
        capped = np.tanh(logits / cap)                                   # z -> cap · tanh(z / cap)
        logits = capped * cap
    return logits, (HeadRecord(rec, capped) if keep else None)


def head_backward(dlogits, rec: HeadRecord, grads: Grads):
    """Reverse of `head`: dx [B, T, C]; d(cap · tanh(z / cap))/dz = 1 − tanh²(z / cap)."""
    if rec.capped is not None:
        dlogits = dlogits * (1.0 - rec.capped * rec.capped)
    return linear_step_backward(dlogits, rec.linear, grads)


# ---------------------------------------------------------------- the whole pass
@dataclass
class ModelRecord:
    """What `backward` needs from one `forward_pass(..., keep=True)`."""
    ids: np.ndarray
    blocks: list                        # BlockRecords, in the order the blocks ran
    final_norm: NormRecord
    head: HeadRecord


def forward_pass(model, ids, cache: KVCache | None = None, layers=None, observer=None,
                 hidden_states: list | None = None, check_numerics: bool = False,
                 last_only: bool = False, keep: bool = False):
    """(logits [B, T, V], ModelRecord or None) for checked ids [B, T]: embed → blocks →
    final norm → head. keep: keep every step's record for `backward`."""
    cfg = model.config
    B, T = ids.shape
    layers = check_layers(cfg, layers)
    if check_numerics:
        observer = _checking(observer)
    start = cache.length if cache is not None else 0
    if start + T > cfg.max_position:
        raise InputError(f"sequence of {start + T} tokens exceeds the model's "
                         f"max_position ({cfg.max_position})")
    x, pos = embed(model, ids, start)                                    # [B, T, C]
    if cache is not None:
        cache.reserve(len(layers), start + T)
    if hidden_states is not None:
        hidden_states.append(x)
    records = []
    for slot, i in enumerate(layers):
        x, rec = block(model, i, x, pos, cache, slot, observer, keep)
        records.append(rec)
        if check_numerics:
            check_finite(f"the output of block {i} "
                         f"('{families.block_prefix(cfg, model.prefix, i)}')", x)
        if hidden_states is not None:
            hidden_states.append(x)
    if cache is not None:
        cache.length = start + T
    x, norm_rec = final_norm(model, x, keep)
    if last_only:
        x = x[:, -1:]                                                    # [B, 1, C]
    logits, head_rec = head(model, x, observer, keep)                    # [B, T, V]
    if check_numerics:
        check_finite(f"the logits (output of '{families.lm_head_name(cfg, model.prefix)}')",
                     logits)
    return logits, (ModelRecord(ids, records, norm_rec, head_rec) if keep else None)


def backward(model, dlogits, record: ModelRecord, trainable=None) -> Grads:
    """Gradients (name -> array, or -> dict for weight objects) from dlogits [B, T, V]:
    the steps of `forward_pass` in reverse."""
    grads = Grads(trainable)
    dx = head_backward(dlogits, record.head, grads)                      # [B, T, C]
    dx = norm_step_backward(dx, record.final_norm, grads)
    for rec in reversed(record.blocks):
        dx = block_backward(dx, rec, grads)
    embed_backward(model, dx, record.ids, grads)
    return grads


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
    logits, _ = forward_pass(model, ids, cache, layers, observer, hidden_states,
                             check_numerics, last_only)
    return logits[0] if np.ndim(input_ids) == 1 else logits
