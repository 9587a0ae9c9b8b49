"""The whole model, forward with caches and backward by hand — no autograd, no tape.

The training forward is the decoder of `minislm.model.forward` written with the
`*_forward` pieces of `layers_backward.py`, each of which returns the cache its
backward needs; the backward walks the same blocks in reverse and calls the
matching `*_backward`. Residual connections copy the gradient to both
branches (x + f(x): dx = dy + f'(x)ᵀ dy), and a weight used twice (the tied
embedding / LM head, a block repeated by `layers`) receives the sum.

Public functions (exact signatures):

    value_and_grad(model, input_ids, labels) -> (loss: float, grads: dict)
        Mean next-token cross-entropy (transformers' `labels` convention, see
        `loss.py`) and its gradient for every parameter: `grads` has exactly the
        keys and shapes of `model.params` (checkpoint names and layouts; the tied
        head's gradient is summed into the embedding's key).

    loss_and_grads(model, input_ids, labels=None, dlogits_fn=None, trainable=None,
                   layers=None) -> (loss: float, grads: dict)
        The lower level the adaptation and pruning code builds on.
        * dlogits_fn(logits [B, T, V]) -> (loss, dlogits [B, T, V]) replaces the
          cross-entropy with any loss on the logits (distillation's KL); give it
          or `labels`, not both.
        * trainable: None (every parameter) or a collection of parameter names
          (or a predicate name -> bool); gradients are computed and returned for
          those only, and the costly dW products of frozen linears are skipped
          (the gradient still flows through them to earlier layers).
        * A linear weight that is not an np.ndarray (e.g. a LoRA-wrapped weight)
          runs `W.linear(x)` in the forward and `dx, g = W.linear_backward(x, dy)`
          in the backward; `grads[name]` is then that dict `g` of the object's own
          gradients, whatever `trainable` says.
        * layers: block order as in `minislm.forward` (a repeated block gets the
          summed gradient).

    model_forward(model, ids, layers=None) -> (logits, caches)
    model_backward(model, dlogits, caches, trainable=None) -> grads
        The two halves, for callers that need the logits between them.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model import families
from ..model.forward import check_ids, rope_of
from .layers_backward import (attention_backward, attention_forward, embedding_backward,
                              embedding_forward, gelu_tanh_backward, gelu_tanh_forward,
                              layer_norm_backward, layer_norm_forward, linear_backward,
                              linear_forward, rms_norm_backward, rms_norm_forward,
                              rope_backward, rope_forward, swiglu_backward, swiglu_forward)
from .loss import cross_entropy_backward, cross_entropy_forward


# ---------------------------------------------------------------- bookkeeping
def _is_trainable(trainable, name) -> bool:
    if trainable is None:
        return True
    if callable(trainable):
        return bool(trainable(name))
    return name in trainable


def _accumulate(grads, name, g) -> None:
    """grads[name] += g (a weight used twice gets the sum of both gradients).

    The arrays in `grads` were all made by this backward pass, so adding in
    place is safe and saves a copy of (for the tied head) a [V, C] array.
    """
    if g is None:
        return
    if name not in grads:
        grads[name] = g
    elif isinstance(g, dict):
        for key, value in g.items():
            grads[name][key] = grads[name][key] + value
    else:
        grads[name] += g


def _lin_forward(model, name, x):
    """The checkpoint's linear `name` (with its bias, if any) on x; (y, cache)."""
    P = model.params
    bias = name[: -len("weight")] + "bias"
    orientation = "in_out" if model.config.family == "gpt2" else "out_in"
    y, cache = linear_forward(x, P[name], P.get(bias), orientation)
    return y, (name, bias, cache)


def _lin_backward(dy, cache, grads, trainable):
    name, bias, lin_cache = cache
    W = lin_cache[1]
    is_object = not isinstance(W, np.ndarray)
    need_dW = _is_trainable(trainable, name)
    dx, dW, db = linear_backward(dy, lin_cache, need_dW=need_dW)
    if need_dW or is_object:
        _accumulate(grads, name, dW)
    if db is not None and _is_trainable(trainable, bias):
        _accumulate(grads, bias, db)
    return dx


def _norm_grads(grads, trainable, prefix, dw, db=None):
    if _is_trainable(trainable, prefix + "weight"):
        _accumulate(grads, prefix + "weight", dw)
    if db is not None and _is_trainable(trainable, prefix + "bias"):
        _accumulate(grads, prefix + "bias", db)


def _heads(x, n, D):
    """[B, T, n·D] -> [B, n, T, D]."""
    B, T, _ = x.shape
    return x.reshape(B, T, n, D).transpose(0, 2, 1, 3)


def _merge_heads(x):
    """[B, n, T, D] -> [B, T, n·D]."""
    B, n, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, n * D)


# ---------------------------------------------------------------- GPT-2 block
def gpt2_block_forward(model, i, x):
    """x + Attn(LN₁ x) W_o, then x + GELU(LN₂ x W_fc) W_proj; returns (x, cache)."""
    cfg, P = model.config, model.params
    p = families.block_prefix(cfg, model.prefix, i)
    C, H, D = cfg.d_model, cfg.n_head, cfg.head_dim
    a, ln1 = layer_norm_forward(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], cfg.norm_eps)
    qkv, c_attn = _lin_forward(model, p + "attn.c_attn.weight", a)          # [B, T, 3C]
    q, k, v = (_heads(qkv[..., j * C:(j + 1) * C], H, D) for j in range(3))  # [B, H, T, D]
    o, att = attention_forward(q, k, v)                                     # [B, H, T, D]
    y, c_proj = _lin_forward(model, p + "attn.c_proj.weight", _merge_heads(o))
    x = x + y
    m, ln2 = layer_norm_forward(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], cfg.norm_eps)
    f, c_fc = _lin_forward(model, p + "mlp.c_fc.weight", m)                  # [B, T, F]
    h, gelu = gelu_tanh_forward(f)
    y, mlp_proj = _lin_forward(model, p + "mlp.c_proj.weight", h)
    return x + y, (p, ln1, c_attn, att, c_proj, ln2, c_fc, gelu, mlp_proj)


def gpt2_block_backward(dx, cache, grads, trainable):
    """Reverse of gpt2_block_forward: dx (into the block output) -> dx (into its input)."""
    p, ln1, c_attn, att, c_proj, ln2, c_fc, gelu, mlp_proj = cache
    dh = _lin_backward(dx, mlp_proj, grads, trainable)                      # [B, T, F]
    dm = _lin_backward(gelu_tanh_backward(dh, gelu), c_fc, grads, trainable)
    dx_ln2, dw, db = layer_norm_backward(dm, ln2)
    _norm_grads(grads, trainable, p + "ln_2.", dw, db)
    dx = dx + dx_ln2                                                        # residual
    do = _lin_backward(dx, c_proj, grads, trainable)                        # [B, T, C]
    B, T, C = do.shape
    H = att[0].shape[1]
    dq, dk, dv = attention_backward(_heads(do, H, C // H), att)             # [B, H, T, D]
    dqkv = np.concatenate([_merge_heads(dq), _merge_heads(dk), _merge_heads(dv)], -1)
    da = _lin_backward(dqkv, c_attn, grads, trainable)
    dx_ln1, dw, db = layer_norm_backward(da, ln1)
    _norm_grads(grads, trainable, p + "ln_1.", dw, db)
    return dx + dx_ln1                                                      # residual


# ---------------------------------------------------------------- LLaMA block
def llama_block_forward(model, i, x, rope):
    """x + Attn(RoPE(q), RoPE(k), v) W_oᵀ, then x + (SiLU(m W_gᵀ) ⊙ m W_uᵀ) W_dᵀ; (x, cache)."""
    cfg, P = model.config, model.params
    p = families.block_prefix(cfg, model.prefix, i)
    H, K, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    cos, sin = rope
    a, n1 = rms_norm_forward(x, P[p + "input_layernorm.weight"], cfg.norm_eps)
    q, c_q = _lin_forward(model, p + "self_attn.q_proj.weight", a)          # [B, T, H·D]
    k, c_k = _lin_forward(model, p + "self_attn.k_proj.weight", a)          # [B, T, K·D]
    v, c_v = _lin_forward(model, p + "self_attn.v_proj.weight", a)          # [B, T, K·D]
    q, rope_cache = rope_forward(_heads(q, H, D), cos, sin)                 # [B, H, T, D]
    k, _ = rope_forward(_heads(k, K, D), cos, sin)                          # [B, K, T, D]
    o, att = attention_forward(q, k, _heads(v, K, D))                       # [B, H, T, D]
    y, c_o = _lin_forward(model, p + "self_attn.o_proj.weight", _merge_heads(o))
    x = x + y
    m, n2 = rms_norm_forward(x, P[p + "post_attention_layernorm.weight"], cfg.norm_eps)
    g, c_gate = _lin_forward(model, p + "mlp.gate_proj.weight", m)          # [B, T, F]
    u, c_up = _lin_forward(model, p + "mlp.up_proj.weight", m)              # [B, T, F]
    h, glu = swiglu_forward(g, u)
    y, c_down = _lin_forward(model, p + "mlp.down_proj.weight", h)
    return x + y, (p, n1, c_q, c_k, c_v, rope_cache, att, c_o, n2, c_gate, c_up, glu, c_down)


def llama_block_backward(dx, cache, grads, trainable):
    """Reverse of llama_block_forward: dx (into the block output) -> dx (into its input)."""
    p, n1, c_q, c_k, c_v, rope_cache, att, c_o, n2, c_gate, c_up, glu, c_down = cache
    dh = _lin_backward(dx, c_down, grads, trainable)                        # [B, T, F]
    dg, du = swiglu_backward(dh, glu)
    dm = _lin_backward(dg, c_gate, grads, trainable) + _lin_backward(du, c_up, grads, trainable)
    dx_n2, dw = rms_norm_backward(dm, n2)
    _norm_grads(grads, trainable, p + "post_attention_layernorm.", dw)
    dx = dx + dx_n2                                                         # residual
    do = _lin_backward(dx, c_o, grads, trainable)                           # [B, T, H·D]
    q = att[0]
    H, D = q.shape[1], q.shape[3]
    dq, dk, dv = attention_backward(_heads(do, H, D), att)
    dq = rope_backward(dq, rope_cache)                                      # [B, H, T, D]
    dk = rope_backward(dk, rope_cache)                                      # [B, K, T, D]
    da = (_lin_backward(_merge_heads(dq), c_q, grads, trainable)
          + _lin_backward(_merge_heads(dk), c_k, grads, trainable)
          + _lin_backward(_merge_heads(dv), c_v, grads, trainable))
    dx_n1, dw = rms_norm_backward(da, n1)
    _norm_grads(grads, trainable, p + "input_layernorm.", dw)
    return dx + dx_n1                                                       # residual


# ---------------------------------------------------------------- whole model
def model_forward(model, ids, layers=None):
    """Logits [B, T, V] for ids [B, T] (no KV cache, positions 0 … T−1) and the caches."""
    ids = check_ids(model, ids)
    cfg, P = model.config, model.params
    B, T = ids.shape
    if T > cfg.max_position:
        raise InputError(f"sequence of {T} tokens exceeds the model's max_position "
                         f"({cfg.max_position})")
    layers = list(range(cfg.n_layer)) if layers is None else list(layers)
    for i in layers:
        if not 0 <= i < cfg.n_layer:
            raise InputError(f"layer index {i} out of range for a {cfg.n_layer}-layer model")
    emb_name = families.embedding_name(cfg, model.prefix)
    x, emb = embedding_forward(P[emb_name], ids)                            # [B, T, C]
    if cfg.family == "gpt2":
        x = x + P[model.prefix + "wpe.weight"][:T]                          # learned positions
    else:
        rope = rope_of(cfg, np.arange(T), x.dtype)                           # cos, sin [T, D]
    blocks = []
    for i in layers:
        if cfg.family == "gpt2":
            x, cache = gpt2_block_forward(model, i, x)
        else:
            x, cache = llama_block_forward(model, i, x, rope)
        blocks.append(cache)
    if cfg.family == "gpt2":
        norm_prefix = model.prefix + "ln_f."
        x, final = layer_norm_forward(x, P[norm_prefix + "weight"], P[norm_prefix + "bias"],
                                      cfg.norm_eps)
    else:
        norm_prefix = "model.norm."
        x, final = rms_norm_forward(x, P[norm_prefix + "weight"], cfg.norm_eps)
    head_name = families.lm_head_name(cfg, model.prefix)
    logits, head = linear_forward(x, P[head_name], None, "out_in")          # [B, T, V]
    return logits, (emb_name, emb, blocks, norm_prefix, final, head_name, head)


def model_backward(model, dlogits, caches, trainable=None):
    """Gradients (dict name -> array, or -> dict for weight objects) from dlogits [B, T, V]."""
    emb_name, emb, blocks, norm_prefix, final, head_name, head = caches
    grads: dict = {}
    dx = _lin_backward(dlogits, (head_name, None, head), grads, trainable)  # [B, T, C]
    if model.config.family == "gpt2":
        dx, dw, db = layer_norm_backward(dx, final)
        _norm_grads(grads, trainable, norm_prefix, dw, db)
        for cache in reversed(blocks):
            dx = gpt2_block_backward(dx, cache, grads, trainable)
        pos_name = model.prefix + "wpe.weight"
        if _is_trainable(trainable, pos_name):
            dP = np.zeros_like(model.params[pos_name])                      # [max_position, C]
            dP[:dx.shape[1]] = dx.sum(0)
            _accumulate(grads, pos_name, dP)
    else:
        dx, dw = rms_norm_backward(dx, final)
        _norm_grads(grads, trainable, norm_prefix, dw)
        for cache in reversed(blocks):
            dx = llama_block_backward(dx, cache, grads, trainable)
    if _is_trainable(trainable, emb_name):
        # tied head: scatter the embedding's gradient into the head's [V, C] gradient
        head_grad = grads.get(emb_name)
        grads[emb_name] = embedding_backward(dx, emb, out=head_grad)
    return grads


def loss_and_grads(model, input_ids, labels=None, dlogits_fn=None, trainable=None,
                   layers=None):
    """(loss, grads) for cross-entropy on `labels` or any loss given by `dlogits_fn`."""
    if (labels is None) == (dlogits_fn is None):
        raise InputError("give exactly one of labels (cross-entropy) or dlogits_fn "
                         "(logits -> (loss, dlogits))")
    logits, caches = model_forward(model, input_ids, layers)
    if dlogits_fn is None:
        loss, ce = cross_entropy_forward(logits, labels)
        del logits                                                          # free [B, T, V]
        dlogits = cross_entropy_backward(ce)
    else:
        loss, dlogits = dlogits_fn(logits)
        dlogits = np.asarray(dlogits)
        if dlogits.shape != logits.shape:
            raise InputError(f"dlogits_fn returned dlogits of shape {dlogits.shape}, "
                             f"expected the logits' shape {logits.shape}")
        del logits
        dlogits = dlogits.astype(model.dtype, copy=False)
    grads = model_backward(model, dlogits, caches, trainable)
    return float(loss), grads


def value_and_grad(model, input_ids, labels):
    """(mean cross-entropy, grads with exactly the keys and shapes of model.params)."""
    if labels is None:
        raise InputError("value_and_grad needs labels (pass input_ids for plain LM training)")
    loss, grads = loss_and_grads(model, input_ids, labels)
    for name, value in model.params.items():
        if name not in grads and isinstance(value, np.ndarray):
            grads[name] = np.zeros_like(value)   # e.g. a weight unused by this input
    return loss, {name: grads[name] for name in model.params}
