# %% [markdown]
# # Lesson 03 — Generation with a KV cache
#
# Generating is a loop: run the model, pick a next token from the last
# position's logits, append it, repeat. Done naively, step n recomputes all n
# positions. But position t's keys and values never change once computed (the
# mask stops them from seeing later tokens), so we keep them: the KV cache.
# Each new step then computes one position and attends over the cached ones.

# %%
import time

import numpy as np

import minislm
from common import WEIGHTS, load_tiny
from minislm.model.generate import next_token
from minislm.tokenizer import decode, encode

model = load_tiny("llama")
prompt = np.array([encode(model.tokenizer, "Return a new list")])
N = 48

# %% [markdown]
# ## Without a cache: recompute everything each step

# %%
t0 = time.perf_counter()
ids = prompt
for _ in range(N):
    logits = minislm.forward(model, ids)                 # [1, T, V], all positions again
    ids = np.concatenate([ids, logits[:, -1].argmax(-1)[:, None]], axis=1)
no_cache_s = time.perf_counter() - t0

# %% [markdown]
# ## With a cache: one position per step

# %%
t0 = time.perf_counter()
cache = minislm.KVCache()
logits = minislm.forward(model, prompt, cache)           # prefill: the whole prompt once
cached = [prompt]
for _ in range(N):
    token = logits[:, -1].argmax(-1)[:, None]            # [1, 1]
    cached.append(token)
    logits = minislm.forward(model, token, cache)        # decode: one position
cached = np.concatenate(cached, axis=1)
cache_s = time.perf_counter() - t0

print(f"{N} tokens: {no_cache_s * 1e3:.0f} ms without cache, {cache_s * 1e3:.0f} ms with "
      f"({no_cache_s / cache_s:.1f}x)")
assert np.array_equal(ids, cached), "cached decoding must equal full recomputation"
print(repr(decode(model.tokenizer, cached[0])))

# %% [markdown]
# Cache size per token = 2 (k and v) × L layers × K kv-heads × D × 4 bytes.
# GQA divides it by H/K compared with full multi-head attention. The bytes a
# sequence needs are positions × that; the cache allocates ahead (it doubles
# its capacity when full), so its arrays hold more than the positions used.

# %%
c = model.config
per_token = 2 * c.n_layer * c.n_kv_head * c.head_dim * 4
used = sum(a[:, :, :cache.length].nbytes for a in cache.k + cache.v)
print(f"KV bytes per token: {per_token} (would be {per_token * c.n_rep} without GQA)")
print(f"{cache.length} positions use {used} bytes = {cache.length} x {per_token}; "
      f"allocated for {cache.capacity} positions: {cache.nbytes} bytes")
assert used == cache.length * per_token and cache.nbytes >= used

# %% [markdown]
# ## Sampling
# Greedy decoding repeats itself; sampling draws from softmax(z / temperature),
# optionally restricted to the top-k tokens or to the smallest set holding
# probability top-p. Written first (transformers' order: temperature, top-k, top-p):
#
#     z ← z / temperature
#     top-k:  z_i ← −∞  where z_i < the k-th largest z
#     top-p:  sort ascending, p = softmax(z); z_i ← −∞ where the cumulative p up to
#             and including i is ≤ 1 − top_p (the most likely token always stays)

# %%
def filtered_logits(z, temperature, top_k=None, top_p=None):
    z = z.astype(np.float64) / temperature
    if top_k is not None:
        z = np.where(z < np.sort(z)[-top_k], -np.inf, z)
    if top_p is not None:
        order = np.argsort(z)                                        # ascending
        p = np.exp(z[order] - z.max())
        drop = np.cumsum(p / p.sum()) <= 1.0 - top_p
        drop[-1] = False
        z[order[drop]] = -np.inf
    return z


z = minislm.forward(model, prompt, last_only=True)[0, -1]              # [V]
for options in ({"top_k": 40}, {"top_p": 0.9}, {"top_k": 40, "top_p": 0.9}):
    kept = filtered_logits(z, 0.8, **options)
    p = np.exp(kept - kept.max())
    p /= p.sum()
    ours = [np.random.default_rng(s).choice(len(p), p=p) for s in range(50)]
    library = [int(next_token(z[None], np.random.default_rng(s), 0.8, **options)[0])
               for s in range(50)]
    print(f"{str(options):28s} keeps {np.isfinite(kept).sum():4d} of {len(z)} tokens")
    assert ours == library, "same filter, same seeds: the same draws as the library"

# %% [markdown]
# The filter draws exactly the library's tokens, so `minislm.generate` does the
# rest. A seed makes it reproducible.

# %%
for kwargs in ({}, {"temperature": 0.8, "top_k": 40, "seed": 0},
               {"temperature": 1.0, "top_p": 0.9, "seed": 0}):
    out = minislm.generate(model, prompt, 24, **kwargs)
    print(f"{str(kwargs):45s} {decode(model.tokenizer, out[0, prompt.shape[1]:])!r}")
again = minislm.generate(model, prompt, 24, temperature=0.8, top_k=40, seed=0)
assert np.array_equal(again, minislm.generate(model, prompt, 24, temperature=0.8, top_k=40,
                                              seed=0)), "same seed, same text"

# %% [markdown]
# ## Against transformers: its logits processors and its generate
# transformers' `TopKLogitsWarper` and `TopPLogitsWarper` must keep the same
# tokens with the same logits as our filter; its greedy `generate` must pick
# the same tokens as ours.

# %%
try:
    import torch
    import transformers
    from transformers.generation.logits_process import (TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)
except ImportError:
    print("transformers not installed (pip install -e '.[reference]'): comparison skipped")
else:
    for top_k, top_p in ((40, None), (None, 0.9), (40, 0.9)):
        scores = TemperatureLogitsWarper(0.8)(None, torch.tensor(z[None], dtype=torch.float64))
        if top_k is not None:
            scores = TopKLogitsWarper(top_k)(None, scores)
        if top_p is not None:
            scores = TopPLogitsWarper(top_p)(None, scores)
        ref, ours = scores[0].numpy(), filtered_logits(z, 0.8, top_k, top_p)
        assert np.array_equal(np.isfinite(ref), np.isfinite(ours))
        assert np.allclose(ref[np.isfinite(ref)], ours[np.isfinite(ours)])
    print("top-k / top-p: the same tokens kept as transformers' logits processors")
    hf = transformers.AutoModelForCausalLM.from_pretrained(WEIGHTS / "tiny-llama").eval()
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompt), max_new_tokens=N, do_sample=False,
                          pad_token_id=0).numpy()
    ours = minislm.generate(model, prompt, N, stop_tokens=())
    print("greedy tokens equal to transformers:", np.array_equal(ref, ours))
    assert np.array_equal(ref, ours)

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/03_generation_with_kv_cache.py`)
# 1. Sample with `top_k=1` at any temperature and seed. Predict: exactly the
#    greedy text (one token is left to draw from).
# 2. Prefill the prompt one token at a time instead of in one call. Predict:
#    the same last-position logits (to float rounding) — the cache makes the
#    two the same computation.
# 3. Generate twice as many tokens. Predict: the bytes used grow by exactly
#    `per_token` per new position, while the allocated bytes jump in doublings.
