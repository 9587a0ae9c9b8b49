"""Solutions to lesson 12's exercises: each prediction is asserted."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import load_tiny                                              # noqa: E402
from minislm.model import families                                       # noqa: E402
from minislm.model.pack import pack_bits                                 # noqa: E402
from minislm.quant.rtn import PER_CHANNEL, PER_TENSOR, quantize_rtn       # noqa: E402

model = load_tiny("gpt2")
lin = next(x for x in families.linear_layers(model.config, model.prefix) if x.role == "fc")
W = np.ascontiguousarray(model.params[lin.name].T)                       # (out, in)


def rel_error(W, bits, g):
    return float(np.linalg.norm(W - quantize_rtn(W, bits, g).dequantize()) / np.linalg.norm(W))


# 1. Per tensor instead of per channel: one grid for all rows, stretched to the largest weight.
per_channel, per_tensor = rel_error(W, 4, PER_CHANNEL), rel_error(W, 4, PER_TENSOR)
print(f"1. 4-bit c_fc: per channel {per_channel:.4f}, per tensor {per_tensor:.4f}")
assert per_tensor > per_channel

# 2. One outlier: row 0's per-channel grid stretches ~50x; with g32 only its first group does.
planted = W.copy()
planted[0, 0] *= 50


def errors(W, g):
    """|w − ŵ| of every weight except the planted one."""
    err = np.abs(W - quantize_rtn(W, 4, g).dequantize())
    err[0, 0] = 0
    return err


before_ch, after_ch = errors(W, PER_CHANNEL), errors(planted, PER_CHANNEL)
before_g, after_g = errors(W, 32), errors(planted, 32)
print(f"2. row 0, columns 32+: mean error per channel {before_ch[0, 32:].mean():.4f} -> "
      f"{after_ch[0, 32:].mean():.4f}; g32 {before_g[0, 32:].mean():.4f} -> "
      f"{after_g[0, 32:].mean():.4f}")
assert after_ch[0, 32:].mean() > 5 * before_ch[0, 32:].mean()   # the whole row pays
assert np.array_equal(after_g[0, 32:], before_g[0, 32:])         # only the first group pays
assert after_g[0, :32].mean() > before_g[0, :32].mean()
assert np.array_equal(after_ch[1:], before_ch[1:]) and np.array_equal(after_g[1:], before_g[1:])

# 3. Byte counts: ⌈n·b/8⌉ per row.
row = np.arange(10, dtype=np.uint8)[None] % 8
assert pack_bits(row, 3).shape[1] == 4                      # 30 bits -> 4 bytes
assert pack_bits(row, 5).shape[1] == 7                      # 50 bits -> 7 bytes
print("3. 10 codes: 3-bit -> 4 bytes, 5-bit -> 7 bytes")
print("lesson 12 solutions: all predictions hold")
