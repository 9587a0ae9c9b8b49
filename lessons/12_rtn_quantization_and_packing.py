# %% [markdown]
# # Lesson 12 — Round-to-nearest quantization and bit packing
#
# Quantization stores each weight as a small integer code q on a uniform grid
# (LLaMA thesis eq. 3.5):
#
#     q = clamp(round(w / s) + z, 0, 2^b − 1)        ŵ = s · (q − z)
#
# s is the step (scale), z the integer that represents 0 (zero point). The
# grid is chosen from the weights it must cover: one (s, z) for the whole
# tensor, one per output channel, or one per group of g input columns.
# We start with the on-device project report's first experiment — INT8
# per-tensor quantization of one fully connected layer, accuracy before and
# after — then see how the error grows as bits shrink and groups grow, and how
# the codes are really packed so the model gets smaller.

# %%
import time
from pathlib import Path

import numpy as np

import minislm
from minislm.calibration import calibration_batches
from minislm.model import families
from minislm.quant.int8 import int8_linear, quantize_weight_int8
from minislm.quant.model_quant import model_nbytes, quantize_model
from minislm.model.pack import pack_bits, unpack_bits
from minislm.model.quantized import QuantizedTensor
from minislm.quant.rtn import PER_CHANNEL, PER_TENSOR, quantize_rtn

ROOT = Path(__file__).resolve().parents[1]
model = minislm.load(ROOT / "weights" / "tiny-gpt2")
cfg = model.config
print(f"tiny GPT-2: {model.num_params():,} parameters, d_model {cfg.d_model}, "
      f"{cfg.n_layer} layers")

# %% [markdown]
# ## INT8, per tensor, one fully connected layer
# The first MLP layer of block 0 (`c_fc`, C -> 4C). Symmetric 8-bit: one
# scale s = 2·max|w| / 255 for the whole matrix, z = 128. We measure the
# model's next-token accuracy on held-out text before and after replacing only
# that layer by its quantized version. Quantizers return their error with the
# result: the largest |w − ŵ| must stay within half a step.

# %%
lin = next(x for x in families.linear_layers(cfg, model.prefix) if x.role == "fc")
W = model.params[lin.name].T                                   # Conv1D (in, out) -> (out, in)
int8 = quantize_rtn(W, bits=8, group_size=PER_TENSOR, sym=True)
step = float(int8.scales[0, 0])
print(f"{lin.name}: W {W.shape}, step s = {step:.3g}, max |w − ŵ| = {int8.max_abs_error:.3g} "
      f"(≤ s/2 = {step / 2:.3g})")

ids = calibration_batches(model, None, n_samples=16, seqlen=64, seed=1)   # [16, 64] windows


def next_token_accuracy(m) -> float:
    logits = minislm.forward(m, ids[:, :-1])
    return float(np.mean(logits.argmax(-1) == ids[:, 1:]))


one_layer = model.replace(params={**model.params,
                                  lin.name: QuantizedTensor.from_matrix(int8, lin.orientation)})
acc_float, acc_int8 = next_token_accuracy(model), next_token_accuracy(one_layer)
print(f"next-token accuracy: float {acc_float:.2%}, INT8 c_fc {acc_int8:.2%} "
      f"(change {100 * (acc_int8 - acc_float):+.2f} points)")

# %% [markdown]
# ## Error against bits and granularity
# Relative weight error ‖W − Ŵ‖ / ‖W‖ over every linear layer of the model.
# Each bit removed doubles the step; a shared scale has to stretch to the
# largest weight it covers, so one outlier in a tensor costs every other weight
# resolution. Smaller groups cost more scales (16 bits each) but adapt.

# %%
lins = families.linear_layers(cfg, model.prefix)
mats = [np.asarray(model.params[x.name]).T for x in lins]


def rel_error(bits, g):
    num = sum(float(np.sum((Wm - quantize_rtn(Wm, bits, g).dequantize()) ** 2)) for Wm in mats)
    return np.sqrt(num / sum(float(np.sum(Wm * Wm)) for Wm in mats))


schemes = {"tensor": PER_TENSOR, "channel": PER_CHANNEL, "g128": 128, "g32": 32}
table = {b: {name: rel_error(b, g) for name, g in schemes.items()} for b in (8, 4, 3, 2)}
print("bits | " + " | ".join(f"{n:>8}" for n in schemes))
for b, row in table.items():
    print(f"{b:>4} | " + " | ".join(f"{row[n]:8.4f}" for n in schemes))

# %% [markdown]
# ## What the grid looks like
# A text histogram of one channel of `c_fc` with its 4-bit grid: the bell of
# weights and the 16 levels that must represent it. Most weights sit near 0,
# where the grid is no denser than at the tails — the reason non-uniform
# formats and outlier handling exist.

# %%
row = W[0]
q4 = quantize_rtn(row[None], bits=4, group_size=PER_CHANNEL)
levels = np.unique(q4.dequantize())
counts, edges = np.histogram(row, bins=24)
for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
    marks = "|" * int(np.sum((levels >= lo) & (levels < hi)))
    print(f"{lo:+.3f} {'#' * int(40 * c / counts.max()):<40} {marks}")
print(f"{len(levels)} levels (|) on the 4-bit grid of this channel")

# %% [markdown]
# ## Packing: two 4-bit codes per byte
# Codes are stored as a little-endian bit stream per row: for 4 bits, code 2i
# in the low nibble and code 2i+1 in the high nibble of byte i; 3-bit codes
# straddle bytes (8 codes in 3 bytes). A row of n b-bit codes takes ⌈n·b/8⌉ bytes.

# %%
codes = np.array([[1, 2, 3, 4, 5, 6, 7, 15]], dtype=np.uint8)
for b in (4, 3):
    packed = pack_bits(codes & (2 ** b - 1), b)
    print(f"{b}-bit: {codes.size} codes -> {packed.size} bytes: {packed[0].tobytes().hex(' ')}")
    assert np.array_equal(unpack_bits(packed, b, codes.shape[1]), codes & (2 ** b - 1))

# %% [markdown]
# ## The whole model, packed
# Every block linear quantized with RTN (embeddings, norms and biases stay
# float32; GPT-2's LM head is the embedding). `nbytes` counts the packed codes,
# the float16 scales and the packed zero points exactly.

# %%
sizes = {"float32": model_nbytes(model)}
for bits, g, sym in ((8, PER_CHANNEL, True), (4, 128, False), (3, 128, False)):
    q, _ = quantize_model(model, "rtn", bits, g, sym, progress=False)
    lin_bytes = sum(q.params[x.name].nbytes for x in lins)
    n_weights = sum(x.d_in * x.d_out for x in lins)
    sizes[f"{bits}-bit g{g}"] = model_nbytes(q)
    print(f"{bits}-bit g{g:>4}: linears {lin_bytes:,} bytes = {8 * lin_bytes / n_weights:.2f} "
          f"bits/weight; model {model_nbytes(q):,} bytes, accuracy {next_token_accuracy(q):.2%}")
print(f"float32 model: {sizes['float32']:,} bytes")

# %% [markdown]
# ## Integer arithmetic: INT8 activations × INT8 weights, int32 sums
# Weight-only quantization still multiplies in float32 (the codes are expanded
# first). Integer hardware quantizes the activations too, per token, and sums
# q_x·q_w in int32: y = s_x s_w Σ q_x q_w. The arithmetic is exact; the only
# error is the two roundings. NumPy has no int8 GEMM (it widens to int32 and
# leaves BLAS), so here the integer path is slower — `bench/quant_bench.py`
# measures by how much — while an NPU or a CPU with int8 dot products gains.

# %%

seen = {}
minislm.forward(model, ids[:2, :32], observer=lambda name, a: seen.setdefault(name, a))
x = seen[lin.name].reshape(-1, cfg.d_model)                      # [64, C]: what c_fc reads
q_w, s_w = quantize_weight_int8(W)
t0 = time.perf_counter()
y_int = int8_linear(x, q_w, s_w)
t_int = time.perf_counter() - t0
t0 = time.perf_counter()
y_float = x @ W.T
t_float = time.perf_counter() - t0
int_err = float(np.linalg.norm(y_int - y_float) / np.linalg.norm(y_float))
print(f"W8A8 c_fc on {x.shape[0]} tokens: relative error {int_err:.2e}; "
      f"NumPy float32 {1e3 * t_float:.2f} ms, int8->int32 {1e3 * t_int:.2f} ms")

# %%
assert int_err < 0.02
assert int8.max_abs_error <= step / 2 * 1.001
assert abs(acc_int8 - acc_float) < 0.01                      # the report: INT8 costs < 1 point
assert all(table[8][n] < table[4][n] < table[3][n] < table[2][n] for n in schemes)
assert all(table[b]["tensor"] >= table[b]["channel"] >= table[b]["g32"] for b in table)
assert sizes["4-bit g128"] < sizes["8-bit g-1"] < sizes["float32"]
