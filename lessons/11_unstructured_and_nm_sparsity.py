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
# * **SparseGPT** — the smallest w²/[H⁻¹]_jj² with H = 2XᵀX/n, and the kept weights
#   of each row are *updated* to compensate (optimal brain surgeon).
#
# **N:M** sparsity keeps the same scores but forces N zeros in every group of M
# consecutive inputs (2:4 is what NVIDIA sparse tensor cores accelerate; the
# LLaMA thesis also tries 1:2, 4:8, 8:16, 1:16 …). Published ordering on
# LLaMA-2-7B (WANDA paper, 50 %): magnitude ≫ WANDA ≈ SparseGPT, and
# 2:4 worse than 4:8 worse than unstructured. Let us check it on our tiny models
# (spoiler: the second half holds, the first needs outlier features we lack).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np

import minislm
from minislm.calibration import calibration_batches
from minislm.data.corpus import corpus_text
from minislm.evaluate.perplexity import perplexity
from minislm.model import families
from minislm.prune.magnitude import magnitude_prune
from minislm.prune.masks import out_in, zeros_per_group
from minislm.prune.report import format_report, sparsity_report
from minislm.prune.sparsegpt import sparsegpt
from minislm.prune.wanda import wanda

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("MINISLM_WEIGHTS", ROOT / "weights"))
OUT = Path(os.environ.get("MINISLM_LESSON_OUT", tempfile.mkdtemp()))
EVAL_TEXT = corpus_text("validation")
EVAL_TOKENS, SEQLEN = 2048, 128


def ppl(model) -> float:
    return perplexity(model, EVAL_TEXT, seqlen=SEQLEN, limit=EVAL_TOKENS,
                      progress=False).perplexity


models = {name: minislm.load(WEIGHTS / f"tiny-{name}") for name in ("gpt2", "llama")}
calib = {name: calibration_batches(m, None, n_samples=8, seqlen=SEQLEN, seed=0)
         for name, m in models.items()}

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
SPARSITIES = (0.5, 0.7)
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

# %% [markdown]
# ## N:M patterns at the LLaMA thesis' ratios
#
# 1:8 removes little (12.5 %; 1:16 even less); 2:4, 4:8, 8:16 all remove half,
# with more freedom as M grows; 3:4 removes three quarters.

# %%
PATTERNS = ("1:8", "2:4", "4:8", "8:16", "3:4")
for name, m in models.items():
    for nm in PATTERNS:
        for method in ("magnitude", "wanda", "sparsegpt"):
            table[name, method, nm] = ppl(METHODS[method](m, calib[name], nm=nm))
    print(f"\ntiny-{name}   " + "".join(f"{nm:>9s}" for nm in PATTERNS))
    for method in ("magnitude", "wanda", "sparsegpt"):
        print(f"{method:12s}" + "".join(f"{table[name, method, nm]:9.2f}" for nm in PATTERNS))

# %% [markdown]
# The N:M pattern is provable by counting: every group of M consecutive inputs
# of every row has at least N zeros.

# %%
m = models["llama"]
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
masks = {"magnitude 50%": magnitude_prune(m, 0.5),
         "WANDA 50%": wanda(m, calib["llama"], sparsity=0.5),
         "WANDA 2:4": pruned_24}
corner = {k: out_in(v.extra_tensors["masks"][lin.name], lin.orientation)[:32, :32]
          for k, v in masks.items()}
for k, v in corner.items():
    print(f"{k:14s} first row: " + "".join("█" if x else "·" for x in v[0]))
try:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, (k, v) in zip(axes, corner.items()):
        ax.imshow(v, cmap="gray_r", interpolation="nearest")
        ax.set_title(k)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{lin.name}: kept weights (black)")
    fig.savefig(OUT / "11_masks.png", dpi=100, bbox_inches="tight")
    print(f"wrote {OUT / '11_masks.png'}")
except ImportError:
    print("matplotlib not installed: skipping the plot")

# %% [markdown]
# ## Why WANDA does not beat magnitude here — and when it does
#
# On LLaMA-7B WANDA wins because a few input channels carry activations 100×
# larger than the rest ("outlier features"): a small weight on such a channel
# still moves the output. Our tiny models have no such channels (lesson 10: the
# largest channel norm is about 2× the median), so |W|·‖X_j‖ ranks almost like |W|
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
    for s in SPARSITIES:                              # reconstruction beats both selections
        assert table[name, "sparsegpt", s] < min(table[name, "magnitude", s],
                                                 table[name, "wanda", s]), (name, s)
    assert table[name, "wanda", "2:4"] > table[name, "wanda", "8:16"]   # more freedom, less harm
    assert table[name, "wanda", 0.5] < table[name, "wanda", "2:4"] < table[name, "wanda", "3:4"]
