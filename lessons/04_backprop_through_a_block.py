# %% [markdown]
# # Lesson 04 — Backpropagation through one block, by hand
#
# Training needs ∂loss/∂θ for every number θ of the model. There is no
# autograd in minislm: as in Karpathy's llm.c, every layer has a `*_forward`
# that returns its output *and a cache* (the few arrays the derivative needs),
# and a `*_backward` beside it that turns the gradient of the output `dy` into
# the gradients of the inputs and weights — the chain rule, one layer at a time:
#
#     y = f(x, w)        dx = (∂y/∂x)ᵀ dy,   dw = (∂y/∂w)ᵀ dy
#
# A residual connection y = x + g(x) copies the gradient to both paths:
# dx = dy + (∂g/∂x)ᵀ dy. We check one layer, then block 0 of the tiny LLaMA,
# against central finite differences (float64), and finally against torch
# autograd on transformers' model.

# %%
import numpy as np

import minislm
from common import WEIGHTS, load_tiny
from minislm.model import layers as lb
from minislm.model.block import Grads, block, block_backward
from minislm.model.forward import positions
from minislm.tokenizer import encode

FOLDER = WEIGHTS / "tiny-llama"
model = load_tiny("llama", dtype=np.float64)       # float64: finite differences need it
cfg, P = model.config, model.params
rng = np.random.default_rng(0)


def finite_difference(f, array, index, h=1e-6):
    """(f(θ + h) − f(θ − h)) / 2h for the single entry array[index] (restored afterwards)."""
    old = array[index]
    array[index] = old + h
    plus = f()
    array[index] = old - h
    minus = f()
    array[index] = old
    return (plus - minus) / (2 * h)


# %% [markdown]
# ## One layer: RMSNorm
# Forward: y = x̂ ⊙ w with x̂ = x / √(mean(x²) + ε). The backward
# (`rms_norm_backward`) is
#
#     dx̂ = dy ⊙ w,   dx = r (dx̂ − x̂ · mean(dx̂ ⊙ x̂)),   dw = Σ_rows dy ⊙ x̂
#
# To test it we need a scalar: L = Σ y ⊙ R for a fixed random R, so dy = R.

# %%
w = P["model.layers.0.input_layernorm.weight"]                      # [C]
x = rng.standard_normal((3, cfg.d_model))                           # [T, C]
y, cache = lb.rms_norm_forward(x, w, cfg.norm_eps)
R = rng.standard_normal(y.shape)
dx, dw = lb.rms_norm_backward(R, cache)


def L_norm():
    return float((lb.rms_norm_forward(x, w, cfg.norm_eps)[0] * R).sum())


for name, array, grad in (("x", x, dx), ("w", w.copy(), dw)):
    if name == "w":
        w = array                                                   # perturb a private copy
    index = tuple(int(rng.integers(0, s)) for s in array.shape)
    numeric = finite_difference(L_norm, array, index)
    print(f"rms_norm d{name}{list(index)}: backward {grad[index]:+.10f}  "
          f"finite difference {numeric:+.10f}")
    assert abs(grad[index] - numeric) <= 1e-6 * max(1.0, abs(numeric))

# %% [markdown]
# ## The whole block
# `block(..., keep=True)` chains RMSNorm → q/k/v projections → RoPE → causal
# grouped-query attention → o_proj → residual → RMSNorm → SwiGLU MLP →
# residual (the steps the family table names), keeping each piece's cache in a
# named `BlockRecord`; `block_backward` calls the
# matching backwards in reverse order. Its output is the gradient of the block
# input, and a dict of gradients for every weight of the block.

# %%
ids = np.array([encode(model.tokenizer, "Return the absolute value of a number.")])
T = ids.shape[1]
x0 = P["model.embed_tokens.weight"][ids]                            # [1, T, C]
pos = positions(model, 0, T, x0.dtype)                              # RoPE tables [T, D]
y, record = block(model, 0, x0, pos, keep=True)
R = rng.standard_normal(y.shape)                                    # L = Σ y ⊙ R
grads = Grads()
dx0 = block_backward(R, record, grads)
print("block 0 weights with gradients:", ", ".join(n.split("layers.0.")[1] for n in grads))


def L_block():
    return float((block(model, 0, x0, pos)[0] * R).sum())


worst = 0.0
checks = [("input x0", x0, dx0)] + [(n.split("layers.0.")[1], P[n], grads[n])
                                    for n in grads]
for name, array, grad in checks:
    index = tuple(int(rng.integers(0, s)) for s in array.shape)
    numeric = finite_difference(L_block, array, index)
    err = abs(grad[index] - numeric) / max(abs(numeric), 1e-8)
    worst = max(worst, err)
    print(f"{name:32s} {str(index):14s} backward {grad[index]:+.8f}  finite diff "
          f"{numeric:+.8f}  rel err {err:.1e}")
print(f"worst relative error against finite differences: {worst:.1e}")
assert worst < 1e-5

# %% [markdown]
# ## The whole model against torch autograd
# `minislm.value_and_grad(model, ids, labels)` runs the same pieces for every
# block plus the embedding, final norm, LM head and cross-entropy (labels are
# shifted inside, as in transformers). torch computes the same gradients with
# its autograd engine; we compare block 0's weights. (transformers computes
# RMSNorm and its loss in float32 even for a float64 model, so expect agreement
# to ~1e-6, not 1e-15; tests/test_backward.py patches that to check to 1e-10.)

# %%
loss, all_grads = minislm.value_and_grad(model, ids, ids)
print(f"loss {loss:.6f}; {len(all_grads)} gradient arrays, one per checkpoint tensor")
try:
    import torch
    import transformers
except ImportError:
    print("torch/transformers not installed (pip install -e '.[reference]'): "
          "the autograd comparison is skipped")
    torch_worst = 0.0
else:
    hf = transformers.AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float64)
    out = hf(torch.tensor(ids), labels=torch.tensor(ids))
    out.loss.backward()
    torch_worst = 0.0
    for name, param in hf.named_parameters():
        if "layers.0." in name:
            ref = param.grad.numpy()
            err = np.abs(all_grads[name] - ref).max() / np.abs(ref).max()
            torch_worst = max(torch_worst, err)
            print(f"{name:45s} max relative difference {err:.1e}")
    print(f"loss: minislm {loss:.8f}, torch {out.loss.item():.8f}")
assert torch_worst < 1e-5

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/04_backprop_through_a_block.py`)
# 1. Redo the RMSNorm check with the step h = 1e-2 and h = 1e-12 instead of
#    1e-6. Predict: both agree worse — the large step by truncation (error ∝ h²),
#    the tiny one by rounding (error ∝ 1e-16 / h).
# 2. Forget that the residual copies the gradient: use block_backward's dx₀
#    minus R (the copy through the attention skip). Predict: the check on the
#    input x₀ fails, the weights' checks still pass (they never see the skip).
# 3. Run the RMSNorm check in float32. Predict: the finite difference with
#    h = 1e-6 is rounding noise (float32 keeps ~7 digits), off by far more than
#    in float64 — why the lesson loads the model in float64.
