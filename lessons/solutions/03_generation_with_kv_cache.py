"""Solutions to lesson 03's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import load_tiny  # noqa: E402
from minislm.tokenizer import encode  # noqa: E402

model = load_tiny("llama")
prompt = np.array([encode(model.tokenizer, "Return a new list")])

# 1. top_k=1 leaves one token: sampling is greedy whatever the temperature and seed.
greedy = minislm.generate(model, prompt, 24)
for temperature, seed in ((0.5, 0), (1.5, 1), (3.0, 2)):
    sampled = minislm.generate(model, prompt, 24, temperature=temperature, top_k=1, seed=seed)
    assert np.array_equal(sampled, greedy)
print("1. top_k=1 equals greedy at temperatures 0.5, 1.5, 3.0")

# 2. Token-by-token prefill = one-call prefill.
whole = minislm.forward(model, prompt, minislm.KVCache())[0, -1]
cache = minislm.KVCache()
for t in range(prompt.shape[1]):
    one = minislm.forward(model, prompt[:, t:t + 1], cache)[0, -1]
gap = np.abs(one - whole).max()
print(f"2. max |Δ logits| token-by-token vs one call: {gap:.1e}")
assert gap < 1e-4

# 3. Used bytes grow linearly with the positions; allocated bytes grow in doublings.
c = model.config
per_token = 2 * c.n_layer * c.n_kv_head * c.head_dim * 4
for n_new in (48, 96):
    cache = minislm.KVCache()
    minislm.generate(model, prompt, n_new, cache=cache, stop_tokens=())
    used = sum(a[:, :, :cache.length].nbytes for a in cache.k + cache.v)
    print(f"3. {n_new} new tokens: {cache.length} positions, used {used} B, "
          f"allocated {cache.nbytes} B ({cache.capacity} positions)")
    assert used == cache.length * per_token and cache.nbytes == cache.capacity * per_token
