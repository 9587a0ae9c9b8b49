"""Solutions to lesson 04's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
from common import load_tiny  # noqa: E402
from minislm.model import layers as lb  # noqa: E402
from minislm.model.block import Grads, block, block_backward  # noqa: E402
from minislm.model.forward import positions  # noqa: E402

model = load_tiny("llama", dtype=np.float64)
cfg, P = model.config, model.params
rng = np.random.default_rng(0)


def central_difference(f, array, index, h):
    old = array[index]
    array[index] = old + h
    plus = f()
    array[index] = old - h
    minus = f()
    array[index] = old
    return (plus - minus) / (2 * h)


def rms_norm_error(dtype, h):
    """Worst relative error of rms_norm_backward's dx against central differences."""
    w = P["model.layers.0.input_layernorm.weight"].astype(dtype)
    x = np.random.default_rng(1).standard_normal((3, cfg.d_model)).astype(dtype)
    R = np.random.default_rng(2).standard_normal((3, cfg.d_model)).astype(dtype)
    dx, _ = lb.rms_norm_backward(R, lb.rms_norm_forward(x, w, cfg.norm_eps)[1])

    def loss():
        return float((lb.rms_norm_forward(x, w, cfg.norm_eps)[0] * R).sum(dtype=np.float64))
    return max(abs(dx[i] - central_difference(loss, x, i, h)) / max(abs(dx[i]), 1e-8)
               for i in [(0, 3), (1, 40), (2, 77)])


# 1. The step size: truncation for a large h, rounding for a tiny one.
errors = {h: rms_norm_error(np.float64, h) for h in (1e-2, 1e-6, 1e-12)}
print("1. float64 relative error by step h:", {h: f"{e:.1e}" for h, e in errors.items()})
assert errors[1e-2] > 10 * errors[1e-6] and errors[1e-12] > 10 * errors[1e-6]

# 2. Dropping one residual copy of the gradient breaks dx0 only.
ids = np.array([model.tokenizer.encode("Return the absolute value of a number.").ids])
x0 = P["model.embed_tokens.weight"][ids]
pos = positions(model, 0, ids.shape[1], x0.dtype)
y, record = block(model, 0, x0, pos, keep=True)
R = rng.standard_normal(y.shape)
grads = Grads()
wrong_dx0 = block_backward(R, record, grads) - R


def loss_block():
    return float((block(model, 0, x0, pos)[0] * R).sum())


index = (0, 2, 5)
numeric = central_difference(loss_block, x0, index, 1e-6)
name = "model.layers.0.mlp.down_proj.weight"
w_index = (3, 7)
w_numeric = central_difference(loss_block, P[name], w_index, 1e-6)
print(f"2. dx0 without the skip copy: {wrong_dx0[index]:+.6f} vs finite difference {numeric:+.6f}; "
      f"d down_proj still {grads[name][w_index]:+.8f} vs {w_numeric:+.8f}")
assert abs(wrong_dx0[index] - numeric) > 1e-2 * abs(numeric)
assert abs(grads[name][w_index] - w_numeric) < 1e-5 * max(abs(w_numeric), 1e-8) + 1e-9

# 3. float32 rounding swamps a finite difference with h = 1e-6.
e32 = rms_norm_error(np.float32, 1e-6)
print(f"3. relative error with h = 1e-6: float64 {errors[1e-6]:.1e}, float32 {e32:.1e}")
assert e32 > 1e3 * errors[1e-6]
