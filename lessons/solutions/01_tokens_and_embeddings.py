"""Solutions to lesson 01's exercises; each asserts the predicted effect."""
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import corpus, load_tiny  # noqa: E402

gpt2, llama = load_tiny("gpt2"), load_tiny("llama")

# 1. Fewer merges -> never fewer tokens, still lossless.
spec = json.loads(gpt2.tokenizer.to_str())
spec["model"]["merges"] = spec["model"]["merges"][:1000]
short = Tokenizer.from_str(json.dumps(spec))
text = corpus("validation")[:3000]
full_ids, short_ids = gpt2.tokenizer.encode(text).ids, short.encode(text).ids
print(f"1. {len(full_ids)} tokens with all merges, {len(short_ids)} with the first 1000")
assert len(short_ids) >= len(full_ids) and short.decode(short_ids) == text

# 2. Byte-level: anything round-trips, at most one token per byte.
odd = "naïve café ☕"
ids = gpt2.tokenizer.encode(odd).ids
print(f"2. {odd!r}: {len(odd.encode())} UTF-8 bytes -> {len(ids)} tokens")
assert gpt2.tokenizer.decode(ids) == odd and len(ids) <= len(odd.encode())

# 3. Position rows: GPT-2 adds P[t], LLaMA adds nothing.
for name, model in (("gpt2", gpt2), ("llama", llama)):
    word = model.tokenizer.encode(" list").ids
    ids = word + model.tokenizer.encode(" of").ids + word
    t1, t2 = 0, len(ids) - len(word)
    streams = []
    minislm.forward(model, np.array([ids]), hidden_states=streams)
    gap = streams[0][0, t1] - streams[0][0, t2]
    if model.config.family == "gpt2":
        P = model.params[model.prefix + "wpe.weight"]
        assert np.allclose(gap, P[t1] - P[t2], atol=1e-6) and np.abs(gap).max() > 0
    else:
        assert np.array_equal(gap, np.zeros_like(gap))
    print(f"3. {name}: max |x0[t1] - x0[t2]| = {np.abs(gap).max():.4f}")
