"""Solutions to lesson 07's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import load_tiny  # noqa: E402
from minislm.adapt import special_tokens  # noqa: E402
from minislm.evaluate.toolcall import heldout_examples, score_answer  # noqa: E402

test = heldout_examples()

# 1. The expected responses score 1.0 on every axis.
scores = [score_answer(ex["response"], ex["tool_calls"]) for ex in test]
with_tool = [s for s in scores if s["parameters"] is not None]
print(f"1. {len(test)} expected responses: tool {np.mean([s['tool'] for s in scores]):.2f}, "
      f"syntax {np.mean([s['syntax'] for s in scores]):.2f}, "
      f"parameters {np.mean([s['parameters'] for s in with_tool]):.2f}")
assert all(s["tool"] and s["syntax"] and s["correct"] for s in scores)

# 2. Without the closing tag there is no block: every axis fails on the tool examples.
cut = [score_answer(ex["response"].replace("</tool_call>", ""), ex["tool_calls"])
       for ex in test if ex["tool_calls"] is not None]
print(f"2. {len(cut)} tool answers without </tool_call>: "
      f"{sum(s['syntax'] or s['tool'] or s['parameters'] for s in cut)} score anything")
assert not any(s["syntax"] or s["tool"] or s["parameters"] for s in cut)

# 3. One more token: one more row, the old rows and logits unchanged.
base = load_tiny("llama")
grown = special_tokens.add_tokens(base)
more = special_tokens.add_tokens(grown, ["<|user|>"])
V = grown.config.vocab_size
E, E_more = grown.params["model.embed_tokens.weight"], more.params["model.embed_tokens.weight"]
probe = np.array([base.tokenizer.encode("User: Call Mom.\nAssistant:").ids])
gap = np.abs(minislm.forward(more, probe)[..., :V] - minislm.forward(grown, probe)).max()
print(f"3. vocabulary {V} -> {more.config.vocab_size}; old logits moved by {gap:.1e}")
assert more.config.vocab_size == V + 1 and np.array_equal(E_more[:V], E) and gap < 1e-5
assert more.tokenizer.encode("<|user|>").ids == [V]
