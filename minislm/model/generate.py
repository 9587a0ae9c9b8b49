"""Autoregressive generation with a KV cache: greedy, temperature, top-k, top-p.

Per step: logits z of the last position; greedy takes argmax z. Sampling draws
from softmax(z / temperature) restricted to the k largest logits (top-k) and to
the smallest set of tokens whose probabilities sum to at least p (top-p,
nucleus), in that order as transformers applies them.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .cache import KVCache
from .forward import check_ids, forward
from .layers import softmax


def next_token(z, rng, temperature=0.0, top_k=None, top_p=None):
    """Choose one token per row from logits z [B, V]."""
    if temperature is None or temperature <= 0.0:
        return z.argmax(-1)
    z = z.astype(np.float64) / float(temperature)
    if top_k is not None and 0 < top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(z, axis=-1)                     # ascending
        p_sorted = softmax(np.take_along_axis(z, order, -1))
        drop_sorted = np.cumsum(p_sorted, -1) <= 1.0 - top_p
        drop_sorted[:, -1] = False                         # always keep the most likely
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, -1)
        z = np.where(drop, -np.inf, z)
    p = softmax(z)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


def generate(model, input_ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None,
             seed=None, stop_tokens=None, on_token=None, layers=None, cache=None,
             check_numerics: bool = False):
    """Continue input_ids [B, T] by up to max_new_tokens; returns [B, T + n] (prompt included).

    stop_tokens: ids that end a row (default: the config's eos_token_id, as
    transformers does; pass () to never stop early). Finished rows are padded
    with their stop token while other rows go on; generation ends when all rows
    have stopped. on_token(step, tokens[B]) is called after every step (streaming).
    cache: an empty KV cache to fill (default: a float32 `KVCache` sized for the run);
    e.g. `minislm.quant.kv_cache.Int8KVCache()` stores keys and values in INT8.
    check_numerics: every forward raises NumericalError naming the first layer that sees
    NaN/Inf (greedy decoding of NaN logits would silently pick token 0).
    """
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_real(v):
        return is_int(v) or isinstance(v, (float, np.floating))

    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be a non-negative int, found {max_new_tokens!r}")
    for name, value, ok in (
            ("temperature", temperature, temperature is None or
             (is_real(temperature) and temperature >= 0)),
            ("top_k", top_k, top_k is None or (is_int(top_k) and top_k >= 1)),
            ("top_p", top_p, top_p is None or (is_real(top_p) and 0.0 < top_p <= 1.0))):
        if not ok:
            raise InputError(f"{name} out of range: {value!r} (expected temperature ≥ 0, "
                             "integer top_k ≥ 1, 0 < top_p ≤ 1)")
    ids = check_ids(model, input_ids)
    one_d = np.ndim(input_ids) == 1
    stop = set(model.config.eos_ids if stop_tokens is None else stop_tokens)
    rng = np.random.default_rng(seed)
    if cache is None:
        # never reserve more than the model can attend over (forward raises past max_position)
        cache = KVCache(capacity=min(ids.shape[1] + max_new_tokens, model.config.max_position))
    elif getattr(cache, "length", None) != 0 or not hasattr(cache, "update"):
        raise InputError(f"cache must be an empty KV cache object (length 0, with update()), "
                         f"found {type(cache).__name__} of length {getattr(cache, 'length', '?')}")
    done = np.zeros(ids.shape[0], dtype=bool)
    out = [ids]
    z = forward(model, ids, cache, layers=layers, last_only=True,
                check_numerics=check_numerics)[:, -1]                       # [B, V]
    for step in range(max_new_tokens):
        tok = next_token(z, rng, temperature, top_k, top_p).astype(np.int64)  # [B]
        tok = np.where(done, out[-1][:, -1], tok)
        out.append(tok[:, None])
        if on_token is not None:
            on_token(step, tok)
        done |= np.isin(tok, list(stop))
        if done.all() or step == max_new_tokens - 1:
            break
        z = forward(model, tok[:, None], cache, layers=layers,
                    check_numerics=check_numerics)[:, -1]
    result = np.concatenate(out, axis=1)
    return result[0] if one_d else result
