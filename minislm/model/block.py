"""One decoder block, read from the family table, forward beside backward.

    a = N_attn_in(x)                          (LayerNorm or RMSNorm, gain w or 1 + w)
    q, k, v = a W_qᵀ, a W_kᵀ, a W_vᵀ          (GPT-2: one fused Conv1D c_attn, split in three)
    q, k = N_q(q), N_k(k)                     (QK-norm, when the family has it)
    q, k = RoPE(q), RoPE(k)                   (when the family has rotary positions)
    x = x + N_attn_out(Attn(q, k, v) W_oᵀ)    (N_attn_out only where the family has it)
    m = N_mlp_in(x)
    h = act(m W_fc)  or  act(m W_gateᵀ) ⊙ m W_upᵀ     (plain MLP or gated: SwiGLU, GeGLU)
    x = x + N_mlp_out(h W_downᵀ)

`block(..., keep=True)` also returns a `BlockRecord`: what `block_backward` needs,
named. The inference forward, the training forward, calibration and every
technique run this one function; `block_backward` walks the same steps in
reverse. Residual connections copy the gradient to both branches
(x + f(x): dx = dy + f'(x)ᵀ dy), and a weight used twice (a block repeated by
`layers`, the tied embedding / LM head) receives the sum.

Shapes use the legend of `minislm.config` (B, T, C, H, K, G, D, F, V).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import families
from .layers import (ACTIVATIONS, AttentionCache, LinearCache, NormCache, attention_backward,
                     attention_forward, glu_backward, glu_forward, layer_norm_backward,
                     layer_norm_forward, linear_backward, linear_forward, rms_norm_backward,
                     rms_norm_forward, rope_backward, rope_forward)


# ------------------------------------------------------------------ gradients
class Grads(dict):
    """{parameter name: gradient}, restricted to `trainable` (None: every parameter;
    else a collection of names or a predicate name -> bool). A weight used twice
    gets the sum of both gradients."""

    def __init__(self, trainable=None):
        super().__init__()
        self.trainable = trainable

    def wants(self, name) -> bool:
        """Whether the gradient of the parameter `name` is asked for."""
        if self.trainable is None:
            return True
        if callable(self.trainable):
            return bool(self.trainable(name))
        return name in self.trainable

    def add(self, name, g) -> None:
        """self[name] += g. The arrays here were all made by this backward pass, so adding
        in place is safe and saves a copy of (for the tied head) a [V, C] array."""
        if g is None:
            return
        if name not in self:
            self[name] = g
        elif isinstance(g, dict):                      # a weight object's own gradients
            for key, value in g.items():
                self[name][key] = self[name][key] + value
        else:
            self[name] += g


# -------------------------------------------------------- linear and norm steps
@dataclass
class LinearRecord:
    """What a linear step keeps for its backward: weight and bias names, the layer cache."""
    name: str                  # checkpoint name of the weight
    bias: str                  # checkpoint name its bias would have
    cache: LinearCache


def linear_step(model, name, x, observer=None, keep=False, orientation=None):
    """The checkpoint's linear `name` (with its bias, if any) on x; (y, record or None).

    observer(name, x) sees the input first: calibration hooks in here."""
    if observer is not None:
        observer(name, x)
    P = model.params
    bias = name[: -len("weight")] + "bias"
    y, cache = linear_forward(x, P[name], P.get(bias),
                              orientation or families.family(model.config).orientation)
    return y, (LinearRecord(name, bias, cache) if keep else None)


def linear_step_backward(dy, rec: LinearRecord, grads: Grads):
    """dx of a `linear_step`; the weight's (and bias's) gradients go into `grads`.
    A frozen array weight skips its dW product; a weight object always reports its own."""
    is_object = not isinstance(rec.cache.W, np.ndarray)
    need_dW = grads.wants(rec.name)
    dx, dW, db = linear_backward(dy, rec.cache, need_dW=need_dW)
    if need_dW or is_object:
        grads.add(rec.name, dW)
    if db is not None and grads.wants(rec.bias):
        grads.add(rec.bias, db)
    return dx


@dataclass
class NormRecord:
    """What a norm step keeps for its backward: the module name, its kind and the layer cache."""
    module: str                # the norm's tensors are <module>.weight (and .bias)
    layer_norm: bool
    cache: NormCache


def norm_step(model, module, x, keep=False):
    """The family's norm (LayerNorm with bias, or RMSNorm; gain w or offset + w) on x."""
    cfg, P = model.config, model.params
    fam = families.family(cfg)
    w = P[module + ".weight"]
    if fam.norm_offset:
        w = w + fam.norm_offset                         # Gemma: y = x̂ (1 + w)
    if fam.layer_norm:
        y, cache = layer_norm_forward(x, w, P[module + ".bias"], cfg.norm_eps, keep)
    else:
        y, cache = rms_norm_forward(x, w, cfg.norm_eps, keep)
    return y, (NormRecord(module, fam.layer_norm, cache) if keep else None)


def norm_step_backward(dy, rec: NormRecord, grads: Grads):
    """dx of a `norm_step`; d(offset + w) = dw, so the gain's gradient is the same."""
    if rec.layer_norm:
        dx, dw, db = layer_norm_backward(dy, rec.cache)
        if grads.wants(rec.module + ".bias"):
            grads.add(rec.module + ".bias", db)
    else:
        dx, dw = rms_norm_backward(dy, rec.cache)
    if grads.wants(rec.module + ".weight"):
        grads.add(rec.module + ".weight", dw)
    return dx


def _optional_norm(model, module, x, keep):
    """A norm the family may not have (module None): identity then."""
    return (x, None) if module is None else norm_step(model, module, x, keep)


def heads(x, n, D):
    """[B, T, n·D] -> [B, n, T, D]."""
    B, T, _ = x.shape
    return x.reshape(B, T, n, D).transpose(0, 2, 1, 3)


def merge_heads(x):
    """[B, n, T, D] -> [B, T, n·D]."""
    B, n, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, n * D)


def split_qkv(config, ys):
    """q [B, T, H·D], k, v [B, T, K·D] from the outputs of the attention projections:
    three separate ones, or GPT-2's one fused c_attn (q | k | v along the last axis)."""
    if len(ys) == 3:
        return ys
    HD, KD = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    qkv = ys[0]                                                          # [B, T, (H+2K)·D]
    return qkv[..., :HD], qkv[..., HD:HD + KD], qkv[..., HD + KD:]


# ------------------------------------------------------------------- the block
@dataclass
class BlockRecord:
    """What `block_backward` needs from one run of `block` (None: the family has no such step)."""
    attn_norm: NormRecord
    qkv: list                           # LinearRecords: one fused projection or q, k, v
    q_norm: NormRecord | None
    k_norm: NormRecord | None
    rope: tuple | None                  # (cos, sin) [T, D]
    attention: AttentionCache
    o: LinearRecord
    attn_out_norm: NormRecord | None
    mlp_norm: NormRecord
    mlp_in: list                        # LinearRecords: fc, or gate and up
    act: str                            # key of layers.ACTIVATIONS
    activation: tuple                   # the activation's (or the GLU's) cache
    mlp_out: LinearRecord
    mlp_out_norm: NormRecord | None


def block(model, i, x, pos, cache=None, slot=None, observer=None, keep=False):
    """Block i on x [B, T, C] at the positions `pos` (a `forward.Positions`); (x, record).

    cache, slot: a KV cache and this run's slot in it (the new keys and values are
    appended). observer(name, x) sees the input of every linear. keep: also return
    the `BlockRecord` the backward needs (else None)."""
    cfg = model.config
    fam = families.family(cfg)
    p = families.block_prefix(cfg, model.prefix, i)
    H, K, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    norms = {role: p + module for role, module in fam.norms.items()}
    a, attn_norm = norm_step(model, norms["attn_in"], x, keep)
    proj = [linear_step(model, f"{p}{m}.weight", a, observer, keep) for m, _ in fam.attention]
    q, k, v = split_qkv(cfg, [y for y, _ in proj])
    q, k, v = heads(q, H, D), heads(k, K, D), heads(v, K, D)      # [B, H|K, T, D]
    q, q_norm = _optional_norm(model, norms.get("q"), q, keep)
    k, k_norm = _optional_norm(model, norms.get("k"), k, keep)
    rope = pos.rope_of_layer(cfg, i)
    if rope is not None:
        q, k = rope_forward(q, *rope)[0], rope_forward(k, *rope)[0]
    if cache is not None:
        k, v = cache.update(slot, k, v)                            # [B, K, S, D]
    o, att = attention_forward(q, k, v, pos.start, keep, scale=cfg.attention_scale,
                               window=cfg.window_of_layer(i), softcap=cfg.attn_softcap)
    y, o_rec = linear_step(model, f"{p}{fam.attention_out}.weight", merge_heads(o),
                           observer, keep)
    y, attn_out_norm = _optional_norm(model, norms.get("attn_out"), y, keep)
    x = x + y
    m, mlp_norm = norm_step(model, norms["mlp_in"], x, keep)
    ins = [linear_step(model, f"{p}{mod}.weight", m, observer, keep) for mod, _ in fam.mlp]
    if len(ins) == 2:                                              # gated: act(g) ⊙ u
        h, act = glu_forward(ins[0][0], ins[1][0], fam.activation, keep)
    else:
        h, act = ACTIVATIONS[fam.activation][0](ins[0][0], keep)  # [B, T, F]
    y, out_rec = linear_step(model, f"{p}{fam.mlp_out[0]}.weight", h, observer, keep)
    y, mlp_out_norm = _optional_norm(model, norms.get("mlp_out"), y, keep)
    record = BlockRecord(attn_norm, [r for _, r in proj], q_norm, k_norm, rope, att, o_rec,
                         attn_out_norm, mlp_norm, [r for _, r in ins], fam.activation, act, out_rec,
                         mlp_out_norm) if keep else None
    return x + y, record


def block_backward(dx, rec: BlockRecord, grads: Grads):
    """Reverse of `block`: dx (into the block output) -> dx (into its input)."""
    dy = dx if rec.mlp_out_norm is None else norm_step_backward(dx, rec.mlp_out_norm, grads)
    dh = linear_step_backward(dy, rec.mlp_out, grads)                    # [B, T, F]
    if len(rec.mlp_in) == 2:
        dg, du = glu_backward(dh, rec.activation)
        dm = (linear_step_backward(dg, rec.mlp_in[0], grads)
              + linear_step_backward(du, rec.mlp_in[1], grads))
    else:
        act_backward = ACTIVATIONS[rec.act][1]
        dm = linear_step_backward(act_backward(dh, rec.activation), rec.mlp_in[0], grads)
    dx = dx + norm_step_backward(dm, rec.mlp_norm, grads)                # residual
    dy = dx if rec.attn_out_norm is None else norm_step_backward(dx, rec.attn_out_norm, grads)
    do = linear_step_backward(dy, rec.o, grads)                          # [B, T, H·D]
    H, D = rec.attention.q.shape[1], rec.attention.q.shape[3]
    dq, dk, dv = attention_backward(heads(do, H, D), rec.attention)      # [B, H|K, T, D]
    if rec.rope is not None:
        dq, dk = rope_backward(dq, rec.rope), rope_backward(dk, rec.rope)
    if rec.q_norm is not None:
        dq = norm_step_backward(dq, rec.q_norm, grads)
        dk = norm_step_backward(dk, rec.k_norm, grads)
    dq, dk, dv = merge_heads(dq), merge_heads(dk), merge_heads(dv)
    if len(rec.qkv) == 1:                                                # fused q | k | v
        da = linear_step_backward(np.concatenate([dq, dk, dv], -1), rec.qkv[0], grads)
    else:
        da = (linear_step_backward(dq, rec.qkv[0], grads)
              + linear_step_backward(dk, rec.qkv[1], grads)
              + linear_step_backward(dv, rec.qkv[2], grads))
    return dx + norm_step_backward(da, rec.attn_norm, grads)             # residual

