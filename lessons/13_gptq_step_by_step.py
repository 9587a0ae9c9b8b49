# %% [markdown]
# # Lesson 13 — GPTQ, step by step on one layer, then through the model
#
# Round-to-nearest treats each weight alone. But a layer is judged by its
# output on real inputs X [n, in] (one calibration token per row),
# ‖(W − Ŵ) Xᵀ‖² (LLaMA thesis eq. 3.6, which writes X as [in, n]), and inputs
# are correlated: when one weight is rounded up, a correlated neighbour can be
# nudged down to cancel the effect on the output. GPTQ (Frantar et al. 2022)
# does exactly that, column by column, with the Hessian of the layer loss
#
#     H = 2 XᵀX / n  (+ λ I, λ = 1 % of mean diag H)       [in, in]   (eq. 3.9)
#
# After quantizing column i with error e = (w_i − q_i) / [H⁻¹]_ii, every
# later column j moves by −e · [H⁻¹]_ij (eq. 3.7), and H⁻¹ loses row and
# column i (eq. 3.8). All those shrinking inverses are in one place: the upper
# Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) has [H_F⁻¹]_ij / [H_F⁻¹]_ii = U_ij / U_ii
# for the columns F = i … in−1 still to go. So the code uses e = (w_i − q_i) / U_ii
# and moves column j by −e · U_ij: one factorisation serves the whole sweep.

# %%
import numpy as np

from common import calibration, load_tiny, ppl, toolcall_model, toolcall_score
from minislm.calibration import collect, inverse_hessian_factor
from minislm.model import families
from minislm.quant.gptq import gptq_quantize
from minislm.quant.model_quant import quantize_model
from minislm.quant.rtn import PER_CHANNEL, dequantize_codes, find_params, output_error, \
    quantize_codes, quantize_rtn

model = load_tiny("llama")
cfg = model.config

# %% [markdown]
# ## Calibration: the inputs of one layer
# 16 random windows of the training corpus (GPTQ uses 128 windows of C4). We
# keep only XᵀX, accumulated batch by batch; X itself is never stored.

# %%
calib = calibration(model, n_samples=16)
lin = next(x for x in families.linear_layers(cfg) if x.role == "o" and x.layer == 1)
stats = collect(model, calib, stats=("xtx",), names=[lin.name])[lin.name]
H = stats.hessian()                                                # [in, in]
W = np.asarray(model.params[lin.name])                             # (out, in): LLaMA layout
d = np.sqrt(np.diag(H))
corr = H / np.outer(d, d)
print(f"{lin.name}: W {W.shape}, {stats.n} calibration tokens")
print(f"mean |correlation| between input channels: {np.abs(corr - np.eye(len(d))).mean():.3f}")

# %% [markdown]
# ## Three columns by hand (3-bit, one grid per output row)
# The grid is fixed up front here (per channel), so the only thing GPTQ
# changes is *which* code each weight gets. Watch the output error of the
# partially quantized layer: RTN's grows with every rounded column, GPTQ's
# grows less because the later columns absorb part of it.

# %%
bits = 3
U, damp = inverse_hessian_factor(H, 0.01)                          # (H + λI)⁻¹ = Uᵀ U
s, z = find_params(W, bits, sym=False)                             # per-row grid [out, 1]
W_gptq, W_rtn = W.astype(np.float64).copy(), W.astype(np.float64).copy()
for i in range(3):
    w = W_gptq[:, i:i + 1]
    w_hat = dequantize_codes(quantize_codes(w.astype(np.float32), s, z, bits), s, z)
    err = (w - w_hat) / U[i, i]                                    # [out, 1]
    W_gptq[:, i:] -= err @ U[i:i + 1, i:]                          # δ on columns i … end
    W_gptq[:, i] = w_hat[:, 0]                                     # column i is now on the grid
    W_rtn[:, i] = dequantize_codes(quantize_codes(W[:, i:i + 1], s, z, bits), s, z)[:, 0]
    print(f"after column {i}: output error RTN {output_error(W, W_rtn, H):.4g}, "
          f"GPTQ {output_error(W, W_gptq, H):.4g}")
full = gptq_quantize(W, H, bits, PER_CHANNEL).quantized.dequantize()
np.testing.assert_allclose(W_gptq[:, :3], full[:, :3], rtol=1e-5, atol=1e-6)
print("the three hand-made columns equal the first three of gptq_quantize's sweep")

# %% [markdown]
# ## The full sweep: lazy 128-column blocks, groups, act-order
# `gptq_quantize` runs the same loop over all columns, applies the updates
# inside a block of 128 columns at once to the rest of the matrix, and
# recomputes a group's grid from the already-updated weights when the sweep
# reaches it. act-order visits the columns with the largest diag H first
# (with "static" groups, so the file layout does not change).

# %%
print(f"{'scheme':<22} {'RTN':>10} {'GPTQ':>10} {'GPTQ/RTN':>9}")
layer_results = {}
for name, g, act in (("3-bit per channel", PER_CHANNEL, False), ("3-bit g32", 32, False),
                     ("3-bit g32 act-order", 32, True), ("4-bit g32", 32, False)):
    b = 4 if name.startswith("4") else 3
    res = gptq_quantize(W, H, b, g, act_order=act)
    layer_results[name] = res
    print(f"{name:<22} {res.error_rtn:10.4g} {res.error_gptq:10.4g} "
          f"{res.error_gptq / res.error_rtn:9.3f}")
rtn_check = output_error(W, quantize_rtn(W, 3, PER_CHANNEL).dequantize(), H)
print(f"(RTN recomputed directly: {rtn_check:.4g})")

# %% [markdown]
# ## Through the whole model, layer by layer
# Block l is calibrated on the outputs of blocks 0 … l−1 *already quantized*,
# so each block corrects for the error the earlier ones made. Perplexity is the
# lessons' yardstick (held-out validation text, never seen in training or
# calibration). At 3 bits per channel and at 2 bits in groups of 32 the
# difference between the two methods shows.

# %%
ppl_float = ppl(model)
print(f"float32 perplexity {ppl_float:.3f}")
perplexity, wins = {}, {}
for bits, g in ((3, PER_CHANNEL), (2, 32)):
    for method in ("rtn", "gptq"):
        q, report = quantize_model(model, method, bits, g, calib_ids=calib, progress=False)
        perplexity[bits, method] = ppl(q)
        if method == "gptq":
            wins[bits] = sum(e["error"] <= e["error_rtn"] for e in report), len(report)
    print(f"{bits}-bit {'per channel' if g == PER_CHANNEL else f'g{g}':>11}: "
          f"RTN {perplexity[bits, 'rtn']:.3f}  GPTQ {perplexity[bits, 'gptq']:.3f}  "
          f"(GPTQ ≤ RTN on {wins[bits][0]}/{wins[bits][1]} layers)")

# %% [markdown]
# ## And on the task
# The tool-calling model of lesson 07 at 3 bits per channel, RTN against GPTQ.

# %%
tool_model = toolcall_model()
tool_calib = calibration(tool_model, n_samples=16)
tool = {"float32": toolcall_score(tool_model)}
for method in ("rtn", "gptq"):
    q, _ = quantize_model(tool_model, method, 3, PER_CHANNEL, calib_ids=tool_calib,
                          progress=False)
    tool[f"3-bit {method.upper()}"] = toolcall_score(q)
for label, r in tool.items():
    print(f"tool-calling model {label:10s} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  "
          f"parameters {r['parameters']:.0%}  all {r['all']:.0%}")

# %% [markdown]
# **Reference.** No GPTQ library runs here (AutoGPTQ and GPTQModel need a CUDA
# build). The checks are the method's own guarantees: the hand-made columns
# equal the library's sweep, GPTQ's layer error is below RTN's on the same grid
# for every layer, and the model's perplexity follows.

# %%
assert all(r.error_gptq < r.error_rtn for r in layer_results.values())
assert all(w == n for w, n in wins.values())
assert perplexity[3, "gptq"] < perplexity[3, "rtn"] and perplexity[2, "gptq"] < perplexity[2, "rtn"]

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/13_gptq_step_by_step.py`)
# 1. Run the layer sweep with uncorrelated inputs: replace H by its diagonal.
#    Predict: GPTQ's updates vanish (every [H⁻¹]_ij with i ≠ j is 0), so GPTQ
#    gives exactly RTN's codes.
# 2. Raise the damping λ from 1 % to 100 % of mean diag H. Predict: H + λI
#    looks more like a diagonal, so GPTQ's advantage over RTN on this layer shrinks.
