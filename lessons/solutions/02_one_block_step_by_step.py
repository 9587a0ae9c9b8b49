"""Solutions to lesson 02's exercises; each asserts the predicted effect."""
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
from common import load_tiny  # noqa: E402
from minislm.model.layers import (apply_rope, attention, rms_norm, rope_inv_freq,  # noqa: E402
                                  rope_tables, softmax)

rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 4, 9, 32)).astype(np.float32) for _ in range(3))

# 1. Without the mask every query reads the future; only the last one already read everything.
unmasked = softmax(q @ k.swapaxes(-1, -2) / np.float32(math.sqrt(32))) @ v
masked = attention(q, k, v)
row_gap = np.abs(unmasked - masked).max(axis=(0, 1, 3))                   # per position
print("1. max |Δ| per position without the mask:", np.round(row_gap, 3))
assert row_gap[-1] < 1e-5 and (row_gap[:-1] > 1e-3).all()

# 2. RoPE scores depend on the distance only: shifting every position changes no score.
inv_freq = rope_inv_freq(32, 10000.0, None)


def scores_at(start):
    cos, sin = rope_tables(np.arange(start, start + 9), inv_freq, np.float32)
    return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).swapaxes(-1, -2)


shift = np.abs(scores_at(10) - scores_at(0)).max()
print(f"2. max |Δ score| after shifting positions by 10: {shift:.1e} (scores ~{np.abs(scores_at(0)).max():.0f})")
assert shift < 1e-3

# 3. RMSNorm removes the scale of its input.
llama = load_tiny("llama")
w = llama.params["model.layers.0.input_layernorm.weight"]
x = rng.standard_normal((9, w.shape[0])).astype(np.float32)
gap = np.abs(rms_norm(10 * x, w, llama.config.norm_eps) - rms_norm(x, w, llama.config.norm_eps)).max()
print(f"3. max |RMSNorm(10x) - RMSNorm(x)| = {gap:.1e}")
assert gap < 1e-4
