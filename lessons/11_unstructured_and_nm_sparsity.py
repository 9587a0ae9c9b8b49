# %% [markdown]
# # Lesson 11 — L1 magnitude vs WANDA vs SparseGPT, unstructured and N:M
#
# Unstructured pruning zeroes individual weights. Three ways to pick them:
#
# * **L1 magnitude** — the smallest |W_ij| (the GPT-2 slides: "prune 40 % of the
#   smallest weights"); the same rule as `torch.nn.utils.prune.l1_unstructured`.
# * **WANDA** — the smallest S_ij = |W_ij| · ‖X_j‖₂: a small weight on an input
#   channel with large activations still matters. Compared within each output
#   row. Needs one calibration pass, no weight update.
# * **SparseGPT** — the smallest ε_ij = w_ij²/[H⁻¹]_jj with H = 2XᵀX/n (X [n, in]
#   the layer's calibration inputs), and the kept weights of each row are
#   *updated* to compensate (optimal brain surgeon).
#
# **N:M** sparsity keeps the same scores but forces N zeros in every group of M
# consecutive inputs (2:4 is what NVIDIA sparse tensor cores accelerate; the
# LLaMA thesis also tries 1:2, 4:8, 8:16, 1:16 …). Published ordering on
# LLaMA-2-7B (WANDA paper, 50 %): magnitude ≫ WANDA ≈ SparseGPT, and
# 2:4 worse than 4:8 worse than unstructured. Let us check it on our tiny models
# (spoiler: the second half holds, the first needs outlier features we lack).

# %%
import numpy as np

import minislm
from common import calibration, load_tiny, ppl, pyplot, save_figure, toolcall_model, toolcall_score
from minislm.calibration import collect, inverse_hessian_factor
from minislm.model import families
from minislm.prune.magnitude import magnitude_prune
from minislm.prune.masks import nm_mask, out_in, zeros_per_group
from minislm.prune.report import format_report, sparsity_report
from minislm.prune.sparsegpt import sparsegpt, sparsegpt_matrix
from minislm.prune.wanda import wanda, wanda_mask

models = {name: load_tiny(name) for name in ("gpt2", "llama")}
calib = {name: calibration(m) for name, m in models.items()}

# %% [markdown]
# ## The three scores by hand, on one layer
# The query projection of block 0 of the tiny LLaMA, W [out, in], and its inputs
# X [n, in] (every calibration token). WANDA: S_ij = |W_ij|·‖X_j‖₂, the ⌊s·in⌋
# lowest of every row pruned; N:M: the N lowest of every M consecutive inputs.

# %%
m = models["llama"]
q_name = next(x.name for x in families.linear_layers(m.config, m.prefix) if x.role == "q")
W = np.asarray(m.params[q_name])                                        # (out, in)
X = []
minislm.forward(m, calib["llama"], observer=lambda name, x: X.append(x) if name == q_name else None)
X = X[0].reshape(-1, W.shape[1])                                        # [n, in]
S = np.abs(W) * np.linalg.norm(X, axis=0)                          # S_ij = |W_ij|·‖X_j‖₂
k = int(0.5 * W.shape[1])
keep = np.ones(W.shape, bool)
np.put_along_axis(keep, np.argsort(S, axis=1, kind="stable")[:, :k], False, axis=1)
groups = S.reshape(W.shape[0], -1, 4)                                   # 2:4 groups
keep_24 = np.ones(groups.shape, bool)
np.put_along_axis(keep_24, np.argsort(groups, axis=2, kind="stable")[:, :, :2], False, axis=2)
stats = collect(m, calib["llama"], stats=("sq_norm", "xtx"), names=[q_name])[q_name]
assert np.array_equal(keep, wanda_mask(W, stats.col_norm, 0.5))
assert np.array_equal(keep_24.reshape(W.shape), nm_mask(S, 2, 4))
print(f"{q_name}: WANDA 50% and 2:4 masks by hand = wanda_mask, nm_mask")

# %% [markdown]
# SparseGPT's saliency. Removing w_ij with the optimal update of the rest of
# row i costs ε_ij = w_ij² / [H⁻¹]_jj (optimal brain surgeon). SparseGPT sweeps
# the columns left to right, so when column j is reached columns 0 … j−1 are
# fixed and the inverse is that of the remaining columns, H_F = H[j:, j:]. The
# upper Cholesky factor U of H⁻¹ holds all of those at once: U_jj² = [H_F⁻¹]_jj,
# which is why the code divides by U_jj². With one sweep block (in ≤ 128) the
# unstructured mask is the lowest half of ε over the whole matrix.

# %%
H = stats.hessian()
U, damp = inverse_hessian_factor(H, 0.01)
H_damped = H + damp * np.mean(np.diag(H)) * np.eye(len(H))
inv_diag = np.array([np.linalg.inv(H_damped[j:, j:])[0, 0] for j in range(len(H))])
np.testing.assert_allclose(np.diag(U) ** 2, inv_diag, rtol=1e-6)
eps = W.astype(np.float64) ** 2 / inv_diag                               # ε_ij = w²/[H_F⁻¹]_jj
keep_sgpt = np.ones(W.size, bool)
keep_sgpt[np.argsort(eps.reshape(-1), kind="stable")[:W.size // 2]] = False
assert W.shape[1] <= 128
assert np.array_equal(keep_sgpt.reshape(W.shape), sparsegpt_matrix(W, H, 0.5).keep)
print("SparseGPT's mask by hand (ε = w²/[H_F⁻¹]_jj, lowest half) = sparsegpt_matrix")

# %% [markdown]
# **Reference.** `torch.nn.utils.prune.l1_unstructured` prunes the smallest |W|
# of a module's weight; applied to every block linear it must give exactly our
# per-layer magnitude masks. (WANDA and SparseGPT have no library in this
# environment; their masks are checked by hand above, against the papers.)

# %%
import torch                                            # noqa: E402  (reference only)
from torch.nn.utils import prune as torch_prune         # noqa: E402

mag50 = magnitude_prune(m, 0.5)
for lin in families.linear_layers(m.config, m.prefix):
    module = torch.nn.Linear(lin.d_in, lin.d_out, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(out_in(m.params[lin.name], lin.orientation))))
    torch_prune.l1_unstructured(module, "weight", amount=0.5)
    assert np.array_equal(module.weight_mask.numpy().astype(bool),
                          out_in(mag50.extra_tensors["masks"][lin.name], lin.orientation)), lin.name
print("torch l1_unstructured: the same masks on every block linear of tiny-llama")

METHODS = {
    "magnitude": lambda m, c, **kw: magnitude_prune(m, **kw),
    "magnitude-global": lambda m, c, **kw: magnitude_prune(m, scope="global", **kw),
    "wanda": lambda m, c, **kw: wanda(m, c, **kw),
    "sparsegpt": lambda m, c, **kw: sparsegpt(m, c, **kw),
}

# %% [markdown]
# ## Perplexity vs sparsity
#
# Every block linear weight loses the same fraction (global magnitude uses one
# threshold for all of them instead). Embeddings and the LM head stay dense.

# %%
SPARSITIES = (0.3, 0.5, 0.7)
table = {}
for name, m in models.items():
    table[name, "dense", 0.0] = ppl(m)
    for sparsity in SPARSITIES:
        for method, prune in METHODS.items():
            table[name, method, sparsity] = ppl(prune(m, calib[name], sparsity=sparsity))
for name in models:
    print(f"\ntiny-{name} (dense {table[name, 'dense', 0.0]:.2f})")
    print(f"{'sparsity':>8s}" + "".join(f"{method:>18s}" for method in METHODS))
    for sparsity in SPARSITIES:
        print(f"{sparsity:8.0%}" + "".join(f"{table[name, method, sparsity]:18.2f}"
                                           for method in METHODS))
plt, fig = pyplot(), None
if plt:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, name in zip(axes, models):
        for method in ("magnitude", "wanda", "sparsegpt"):
            ax.plot([0.0, *SPARSITIES], [table[name, "dense", 0.0]] +
                    [table[name, method, s] for s in SPARSITIES], marker="o", label=method)
        ax.set_yscale("log")
        ax.set_xlabel("sparsity of every block linear")
        ax.set_ylabel("perplexity (log)")
        ax.set_title(f"tiny-{name}")
    axes[0].legend()
    fig.tight_layout()
save_figure(fig, "11_ppl_vs_sparsity")

# %% [markdown]
# ## N:M patterns at the LLaMA thesis' ratios
#
# 1:8 removes little (12.5 %; 1:16 even less); 2:4, 4:8, 8:16 all remove half,
# with more freedom as M grows; 3:4 removes three quarters.

# %%
PATTERNS = ("1:8", "2:4", "4:8", "8:16", "3:4")
for nm in PATTERNS:                              # the tiny LLaMA only: the lesson's time budget
    for method in ("magnitude", "wanda", "sparsegpt"):
        table["llama", method, nm] = ppl(METHODS[method](m, calib["llama"], nm=nm))
print("\ntiny-llama   " + "".join(f"{nm:>9s}" for nm in PATTERNS))
for method in ("magnitude", "wanda", "sparsegpt"):
    print(f"{method:12s}" + "".join(f"{table['llama', method, nm]:9.2f}" for nm in PATTERNS))

# %% [markdown]
# The N:M pattern is provable by counting: every group of M consecutive inputs
# of every row has at least N zeros.

# %%
pruned_24 = wanda(m, calib["llama"], nm="2:4")
for lin in families.linear_layers(m.config, m.prefix):
    W = out_in(pruned_24.params[lin.name], lin.orientation)
    assert zeros_per_group((W != 0).astype(np.uint8), 4).min() >= 2, lin.name

# %% [markdown]
# ## What it saves: dense vs CSR vs N:M bytes
#
# The zeros are still stored in the dense checkpoint. A compressed format must
# store the position of every kept value: CSR pays a 4-byte column index per
# value, so in float32 it only wins below 50 % density; 2:4 needs 2 bits per kept
# value. Trimming (lessons 09–10) removes the bytes outright.

# %%
for label, model in (("50% unstructured (WANDA)", wanda(m, calib["llama"], sparsity=0.5)),
                     ("2:4 (WANDA)", pruned_24),
                     ("70% unstructured (WANDA)", wanda(m, calib["llama"], sparsity=0.7))):
    print(f"\ntiny-llama, {label}")
    print(format_report(sparsity_report(model), per_layer=False))
rep = sparsity_report(pruned_24)
assert rep["sparse_bytes"] < rep["dense_bytes"]
assert all(r.csr_bytes > r.dense_bytes for r in sparsity_report(
    magnitude_prune(m, 0.3))["layers"])                     # CSR loses at 70 % density

# %% [markdown]
# ## A picture of the masks
#
# The same 32×32 corner of one MLP weight, kept weights in black. Magnitude
# and WANDA differ in the columns: WANDA keeps more of the inputs whose
# activations are large. 2:4 spreads the zeros evenly along every row.

# %%
lin = [x for x in families.linear_layers(m.config, m.prefix) if x.role == "down"][-1]
masks = {"magnitude 50%": mag50,
         "WANDA 50%": wanda(m, calib["llama"], sparsity=0.5),
         "WANDA 2:4": pruned_24}
corner = {k: out_in(v.extra_tensors["masks"][lin.name], lin.orientation)[:32, :32]
          for k, v in masks.items()}
for k, v in corner.items():
    print(f"{k:14s} first row: " + "".join("█" if x else "·" for x in v[0]))
fig = None
if plt:
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (k, v) in zip(axes, corner.items()):
        ax.imshow(v, cmap="gray_r", interpolation="nearest")
        ax.set_title(k)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{lin.name}: kept weights (black)")
save_figure(fig, "11_masks")

# %% [markdown]
# ## Why WANDA does not beat magnitude here — and when it does
#
# On LLaMA-7B WANDA wins because a few input channels carry activations 100×
# larger than the rest ("outlier features"): a small weight on such a channel
# still moves the output. Our tiny models have no such channels (lesson 10: their
# channel norms are nearly flat), so |W|·‖X_j‖ ranks almost like |W|
# and the two methods tie. SparseGPT still wins clearly: it *repairs* the kept
# weights, which matters at any scale.
#
# We can make an outlier without changing the model: scale a few channels of the
# MLP's input norm by α and divide the matching input columns of gate/up by α.
# The function is identical, but those weights are now α× smaller, so magnitude
# pruning removes them first. WANDA's score |W_ij/α|·‖αX_j‖ does not change at all.

# %%
alpha, channels = 20.0, np.arange(0, m.config.d_model, 4)           # 32 channels per layer
params = dict(m.params)
for i in range(m.config.n_layer):
    p = f"model.layers.{i}."
    norm = params[p + "post_attention_layernorm.weight"].copy()
    norm[channels] *= alpha
    params[p + "post_attention_layernorm.weight"] = norm
    for proj in ("gate_proj", "up_proj"):
        W = params[p + f"mlp.{proj}.weight"].copy()                  # [F, C]
        W[:, channels] /= alpha
        params[p + f"mlp.{proj}.weight"] = W
outlier = m.replace(params=params)
ids = calib["llama"][:1, :32]
np.testing.assert_allclose(minislm.forward(outlier, ids), minislm.forward(m, ids),
                           rtol=1e-4, atol=1e-4)                     # the same function
mag_outlier = ppl(magnitude_prune(outlier, 0.5))
wanda_outlier = ppl(wanda(outlier, calib["llama"], sparsity=0.5))
print(f"tiny-llama with {len(channels)} rescaled channels per layer (same function): "
      f"magnitude 50% {table['llama', 'magnitude', 0.5]:.2f} -> {mag_outlier:.2f}; "
      f"WANDA 50% {table['llama', 'wanda', 0.5]:.2f} -> {wanda_outlier:.2f}")

# %% [markdown]
# ## Checks

# %%
assert wanda_outlier < mag_outlier                    # activation-aware survives the rescale
assert abs(wanda_outlier - table["llama", "wanda", 0.5]) < 0.02 * wanda_outlier
for name in models:
    for s in SPARSITIES[1:]:                          # reconstruction beats both selections
        assert table[name, "sparsegpt", s] < min(table[name, "magnitude", s],
                                                 table[name, "wanda", s]), (name, s)
    assert all(table[name, method, 0.3] < table[name, method, 0.5] < table[name, method, 0.7]
               for method in ("magnitude", "wanda", "sparsegpt"))
assert table["llama", "wanda", "2:4"] > table["llama", "wanda", "8:16"]   # more freedom, less harm
wanda_llama = {key[2]: v for key, v in table.items() if key[:2] == ("llama", "wanda")}
assert wanda_llama[0.5] < wanda_llama["2:4"] < wanda_llama["3:4"]

# %% [markdown]
# ## And on the task
# The tool-calling model of lesson 07 at 50 % sparsity: does the repair that
# wins on perplexity also keep more tool calls intact? On this small held-out
# set SparseGPT keeps at least as many as WANDA; the score moves in steps of one
# prompt in 30, far coarser than perplexity.

# %%
tool_model = toolcall_model()
tool_calib = calibration(tool_model)
tool = {"dense": toolcall_score(tool_model)}
for method in ("wanda", "sparsegpt"):
    tool[f"{method} 50%"] = toolcall_score(METHODS[method](tool_model, tool_calib, sparsity=0.5))
for label, r in tool.items():
    print(f"tool-calling model {label:14s} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  "
          f"parameters {r['parameters']:.0%}  all {r['all']:.0%}")
assert tool["wanda 50%"]["all"] <= tool["dense"]["all"]
assert tool["sparsegpt 50%"]["all"] >= tool["wanda 50%"]["all"]

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/11_unstructured_and_nm_sparsity.py`)
# 1. Rescale the outlier channels by α = 100 instead of 20. Predict both
#    perplexities. (Hint: which weights of gate/up did magnitude pruning already
#    remove at α = 20?)
# 2. Prune the tiny LLaMA to 2:4 with SparseGPT instead of WANDA. Predict: lower
#    perplexity than WANDA 2:4 (the repair works under the pattern too), and the
#    2:4 count still holds in every group.
