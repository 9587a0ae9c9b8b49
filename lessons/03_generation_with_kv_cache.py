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
from pathlib import Path

import numpy as np

import minislm
from minislm.tokenizer import decode, encode

ROOT = Path(__file__).resolve().parents[1]
model = minislm.load(ROOT / "weights" / "tiny-llama")
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
      f"({no_cache_s / cache_s:.1f}x); cache holds {cache.length} positions, {cache.nbytes} bytes")
assert np.array_equal(ids, cached), "cached decoding must equal full recomputation"
print(repr(decode(model.tokenizer, cached[0])))

# %% [markdown]
# Cache size per token = 2 (k and v) × L layers × K kv-heads × D × 4 bytes.
# GQA divides it by H/K compared with full multi-head attention.

# %%
c = model.config
per_token = 2 * c.n_layer * c.n_kv_head * c.head_dim * 4
print(f"KV bytes per token: {per_token} (would be {per_token * c.n_rep} without GQA)")

# %% [markdown]
# ## Sampling
# Greedy decoding repeats itself; sampling draws from softmax(z / temperature),
# optionally restricted to the top-k tokens or to the smallest set holding
# probability top-p. A seed makes it reproducible.

# %%
for kwargs in ({}, {"temperature": 0.8, "top_k": 40, "seed": 0},
               {"temperature": 1.0, "top_p": 0.9, "seed": 0}):
    out = minislm.generate(model, prompt, 24, **kwargs)
    print(f"{str(kwargs):45s} {decode(model.tokenizer, out[0, prompt.shape[1]:])!r}")
again = minislm.generate(model, prompt, 24, temperature=0.8, top_k=40, seed=0)
assert np.array_equal(again, minislm.generate(model, prompt, 24, temperature=0.8, top_k=40,
                                              seed=0)), "same seed, same text"

# %% [markdown]
# ## Against transformers' generate

# %%
try:
    import torch
    import transformers
except ImportError:
    print("transformers not installed (pip install -e '.[reference]'): comparison skipped")
else:
    hf = transformers.AutoModelForCausalLM.from_pretrained(ROOT / "weights" / "tiny-llama").eval()
    hf.generation_config.eos_token_id = None
    with torch.no_grad():
        ref = hf.generate(torch.tensor(prompt), max_new_tokens=N, do_sample=False,
                          pad_token_id=0).numpy()
    ours = minislm.generate(model, prompt, N, stop_tokens=())
    print("greedy tokens equal to transformers:", np.array_equal(ref, ours))
    assert np.array_equal(ref, ours)
