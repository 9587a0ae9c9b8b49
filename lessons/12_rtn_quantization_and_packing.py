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
import warnings

import numpy as np

import minislm
from common import load_tiny, ppl, pyplot, save_figure, toolcall_model, toolcall_score
from minislm.calibration import calibration_batches
from minislm.model import families
from minislm.model.pack import pack_bits, unpack_bits
from minislm.model.quantized import QuantizedTensor
from minislm.quant.int8 import int8_linear, quantize_weight_int8
from minislm.quant.model_quant import model_nbytes, quantize_model
from minislm.quant.rtn import PER_CHANNEL, PER_TENSOR, quantize_rtn

model = load_tiny("gpt2")
cfg = model.config
print(f"tiny GPT-2: {model.num_params():,} parameters, d_model {cfg.d_model}, "
      f"{cfg.n_layer} layers")

# %% [markdown]
# ## RTN in six lines
# Asymmetric, one grid per output row: the range [min(w, 0), max(w, 0)] is cut
# into 2^b − 1 steps. The scale is stored as float16, rounded *up* so the grid
# still reaches the extreme weight; z is the code of 0.

# %%
def rtn_by_hand(W, bits):
    q_max = 2 ** bits - 1
    lo, hi = np.minimum(W.min(1, keepdims=True), 0), np.maximum(W.max(1, keepdims=True), 0)
    s = ((hi - lo) / q_max).astype(np.float16)
    s = np.where(s.astype(np.float32) < (hi - lo) / q_max, np.nextafter(s, np.float16(1)), s)
    z = np.clip(np.round(-lo / s.astype(np.float32)), 0, q_max)
    q = np.clip(np.round(W / s.astype(np.float32)) + z, 0, q_max)
    return q.astype(np.uint8), s, z, s.astype(np.float32) * (q - z)


lin = next(x for x in families.linear_layers(cfg, model.prefix) if x.role == "fc")
W = model.params[lin.name].T                                   # Conv1D (in, out) -> (out, in)
for bits in (8, 4, 3):
    q, s, z, W_hat = rtn_by_hand(W, bits)
    lib = quantize_rtn(W, bits, PER_CHANNEL)
    assert np.array_equal(q, lib.q) and np.array_equal(s, lib.scales)
    assert np.array_equal(W_hat.astype(np.float32), lib.dequantize())
print(f"RTN by hand = quantize_rtn on {lin.name} {W.shape} at 8, 4 and 3 bits")

# %% [markdown]
# **Reference.** PyTorch's `quantize_per_channel` applies the same formula
# q = clamp(round(w/s) + z, 0, 255) with the scales and zeros we give it; its
# codes must equal ours. Only one thing may differ: torch multiplies by 1/s
# where we divide by s, so a weight whose w/s lies within float32 rounding of
# a .5 tie can land one code apart.

# %%
import torch                                               # noqa: E402  (reference only)

q8 = quantize_rtn(W, 8, PER_CHANNEL)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")                        # torch marks quint8 deprecated
    ref = torch.quantize_per_channel(torch.from_numpy(W), torch.from_numpy(
        q8.scales[:, 0].astype(np.float64)), torch.from_numpy(q8.zeros[:, 0].astype(np.int64)),
        axis=0, dtype=torch.quint8).int_repr().numpy()
differ = ref != q8.q
ratio = W / q8.scales.astype(np.float32)
at_tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < 1e-5
assert np.all(np.abs(ref.astype(int) - q8.q)[differ] == 1) and np.all(at_tie[differ])
print(f"torch.quantize_per_channel gives the same 8-bit codes except at {int(differ.sum())} "
      f"of {W.size:,} weights, all within rounding of a .5 tie")

# %% [markdown]
# ## INT8, per tensor, one fully connected layer
# The first MLP layer of block 0 (`c_fc`, C -> 4C). Symmetric 8-bit: one
# scale s = 2·max|w| / 255 for the whole matrix, z = 128. We measure the
# model's next-token accuracy on held-out text before and after replacing only
# that layer by its quantized version. Quantizers return their error with the
# result: the largest |w − ŵ| must stay within half a step.

# %%
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
# weights and the 2⁴ = 16 levels that must represent it (not every level is
# necessarily used: z is rounded, so the grid can overhang the range). Most
# weights sit near 0, where the grid is no denser than at the tails — the
# reason non-uniform formats (NF4) and outlier handling exist.

# %%
row = W[0]
q4 = quantize_rtn(row[None], bits=4, group_size=PER_CHANNEL)
levels = q4.scales[0, 0].astype(np.float32) * (np.arange(16) - q4.zeros[0, 0].astype(np.float32))
used = np.unique(q4.q)
counts, edges = np.histogram(row, bins=24)
for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
    marks = "|" * int(np.sum((levels >= lo) & (levels < hi)))
    print(f"{lo:+.3f} {'#' * int(40 * c / counts.max()):<40} {marks}")
shown = int(np.sum((levels >= edges[0]) & (levels < edges[-1])))
print(f"{len(levels)} levels on the 4-bit grid; {len(used)} of them used by this channel's "
      f"{row.size} weights; the | marks show the {shown} inside the plotted range")
assert len(levels) == 16 and len(used) <= 16

# %% [markdown]
# The same picture for the whole matrix, as a figure: the float32 weights and
# what 4-bit and 3-bit per-channel RTN make of them (every row has its own
# grid, so the matrix shows many slightly shifted grids as spikes).

# %%
plt, fig = pyplot(), None
if plt:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharex=True, sharey=True)
    bins = np.linspace(W.min(), W.max(), 121)
    for ax, (title, values) in zip(axes, (
            ("float32", W), ("4-bit per channel", quantize_rtn(W, 4, PER_CHANNEL).dequantize()),
            ("3-bit per channel", quantize_rtn(W, 3, PER_CHANNEL).dequantize()))):
        ax.hist(values.ravel(), bins=bins, color="tab:blue")
        ax.set_title(f"{lin.name}: {title}", fontsize=8)
        ax.set_yscale("log")
    axes[0].set_ylabel("weights per bin")
save_figure(fig, "12_weight_histograms")

# %% [markdown]
# ## Packing: two 4-bit codes per byte
# Codes are stored as a little-endian bit stream per row: for 4 bits, code 2i
# in the low nibble and code 2i+1 in the high nibble of byte i; 3-bit codes
# straddle bytes (8 codes in 3 bytes). A row of n b-bit codes takes ⌈n·b/8⌉ bytes.

# %%
def pack_by_hand(codes, b):
    bits = (codes[:, :, None] >> np.arange(b, dtype=np.uint8)) & 1          # bit k of code j
    stream = bits.reshape(len(codes), -1)                                  # stream bit j·b + k
    stream = np.pad(stream, ((0, 0), (0, -stream.shape[1] % 8)))           # whole bytes
    return (stream.reshape(len(codes), -1, 8) << np.arange(8, dtype=np.uint8)).sum(
        -1, dtype=np.uint8)


codes = np.array([[1, 2, 3, 4, 5, 6, 7, 15]], dtype=np.uint8)
for b in (4, 3):
    packed = pack_bits(codes & (2 ** b - 1), b)
    print(f"{b}-bit: {codes.size} codes -> {packed.size} bytes: {packed[0].tobytes().hex(' ')}")
    assert np.array_equal(pack_by_hand(codes & (2 ** b - 1), b), packed)
    assert np.array_equal(unpack_bits(packed, b, codes.shape[1]), codes & (2 ** b - 1))
q4_codes = quantize_rtn(W, 4, PER_CHANNEL).q
assert np.array_equal(pack_by_hand(q4_codes, 4), pack_bits(q4_codes, 4))
assert np.array_equal(pack_bits(q4_codes, 4), q4_codes[:, 0::2] | (q4_codes[:, 1::2] << 4))

# %% [markdown]
# **Reference.** PyTorch's `quint4x2` stores two 4-bit codes per byte in the
# same order (code 2i low, 2i + 1 high): given our grid, its packed bytes must
# equal ours. (3-bit packing has no common reference; the round trip above and
# the byte count ⌈n·b/8⌉ are its checks.)

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ref4 = torch.quantize_per_tensor(torch.tensor(codes[0], dtype=torch.float32), 1.0, 0,
                                     torch.quint4x2).int_repr().numpy()
assert np.array_equal(ref4, pack_bits(codes, 4)[0])
print(f"torch quint4x2 packs the codes to the same bytes: {ref4.tobytes().hex(' ')}")

# %% [markdown]
# ## The whole model, packed
# Every block linear quantized with RTN (embeddings, norms and biases stay
# float32; GPT-2's LM head is the embedding). `nbytes` counts the packed codes,
# the float16 scales and the packed zero points exactly.

# %%
def scheme(bits, g, sym=False):
    """A readable name: "4-bit g128", "8-bit per channel sym", …"""
    grid = {PER_CHANNEL: "per channel", PER_TENSOR: "per tensor"}.get(g, f"g{g}")
    return f"{bits}-bit {grid}" + (" sym" if sym else "")


sizes, perplexity = {"float32": model_nbytes(model)}, {"float32": ppl(model)}
print(f"{'float32':<22} model {sizes['float32']:>9,} bytes, perplexity {perplexity['float32']:.2f}")
for bits, g, sym in ((8, PER_CHANNEL, True), (4, 128, False), (3, 128, False)):
    q, _ = quantize_model(model, "rtn", bits, g, sym, progress=False)
    lin_bytes = sum(q.params[x.name].nbytes for x in lins)
    n_weights = sum(x.d_in * x.d_out for x in lins)
    name = scheme(bits, g, sym)
    sizes[name], perplexity[name] = model_nbytes(q), ppl(q)
    print(f"{name:<22} model {sizes[name]:>9,} bytes, perplexity {perplexity[name]:.2f}; "
          f"linears {8 * lin_bytes / n_weights:.2f} bits/weight")

# %% [markdown]
# ## And on the task: the tool-calling model of lesson 07
# Perplexity is an average over every token; a tool call fails on one wrong
# token. The same RTN schemes on the tool-calling model (a tiny LLaMA), scored
# on held-out prompts (tool, syntax, parameters, all three).

# %%
tool_model = toolcall_model()
tool = {"float32": toolcall_score(tool_model)}
for bits, g in ((4, 128), (3, 128), (2, 32)):
    q, _ = quantize_model(tool_model, "rtn", bits, g, progress=False)
    tool[scheme(bits, g)] = toolcall_score(q)
for name, r in tool.items():
    print(f"{name:<14} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  parameters "
          f"{r['parameters']:.0%}  all {r['all']:.0%}")

# %% [markdown]
# ## Integer arithmetic: INT8 activations × INT8 weights, int32 sums
# Weight-only quantization still multiplies in float32 (the codes are expanded
# first). Integer hardware quantizes the activations too, per token, and sums
# q_x·q_w in int32: y = s_x s_w Σ q_x q_w. The arithmetic is exact; the only
# error is the two roundings. NumPy has no int8 GEMM (it widens to int32 and
# leaves BLAS), so here the integer path is slower — `bench/quant_bench.py`
# measures by how much — while an NPU or a CPU with int8 dot products gains.
# Timing: one warm-up call each, then the median of 21 runs (a single cold run
# mostly measures page faults and whatever else the machine is doing).

# %%
seen = {}
minislm.forward(model, ids[:2, :32], observer=lambda name, a: seen.setdefault(name, a))
x = seen[lin.name].reshape(-1, cfg.d_model)                      # [64, C]: what c_fc reads
q_w, s_w = quantize_weight_int8(W)


def median_ms(fn, repeats=21):
    fn()                                                         # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


y_int, y_float = int8_linear(x, q_w, s_w), x @ W.T
t_int, t_float = median_ms(lambda: int8_linear(x, q_w, s_w)), median_ms(lambda: x @ W.T)
int_err = float(np.linalg.norm(y_int - y_float) / np.linalg.norm(y_float))
print(f"W8A8 c_fc on {x.shape[0]} tokens: relative error {int_err:.2e}; median of 21: "
      f"NumPy float32 {t_float:.3f} ms, int8->int32 {t_int:.3f} ms "
      f"({t_int / t_float:.1f}× {'slower' if t_int > t_float else 'faster'})")

# %%
assert int_err < 0.02
assert int8.max_abs_error <= step / 2 * 1.001
assert abs(acc_int8 - acc_float) < 0.01                      # the report: INT8 costs < 1 point
assert all(table[8][n] < table[4][n] < table[3][n] < table[2][n] for n in schemes)
assert all(table[b]["tensor"] >= table[b]["channel"] >= table[b]["g32"] for b in table)
assert sizes["4-bit g128"] < sizes["8-bit per channel sym"] < sizes["float32"]
assert perplexity["8-bit per channel sym"] < 1.01 * perplexity["float32"]
assert perplexity["float32"] < perplexity["4-bit g128"] < perplexity["3-bit g128"]
assert tool["2-bit g32"]["all"] <= tool["float32"]["all"]

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/12_rtn_quantization_and_packing.py`)
# 1. Quantize `c_fc` at 4 bits per tensor instead of per channel. Predict: the
#    relative error grows (one grid stretched to the largest weight of all rows).
# 2. Plant one outlier: multiply W[0, 0] by 50, then quantize 4-bit per channel
#    and with groups of 32. Predict: per channel, every weight of row 0 pays (its
#    step stretches to the outlier); with g32 only the first group of row 0 does,
#    the rest of the row keeps exactly its old error; other rows never change.
# 3. Pack 3-bit codes of a row of 10 weights. Predict the byte count (⌈30/8⌉ = 4)
#    before running `pack_bits`, and that 5-bit codes of the same row take 7.
