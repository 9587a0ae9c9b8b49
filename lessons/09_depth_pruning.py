# %% [markdown]
# # Lesson 09 — Depth pruning: which blocks can we remove?
#
# A transformer is a stack of blocks, each adding its update to the residual
# stream: x_{i+1} = x_i + block_i(x_i). Removing a whole block removes its
# weights, its memory traffic and its latency in one go — the coarsest and most
# hardware-friendly kind of pruning. The question is *which* blocks.
#
# Four answers (Shortened-LLaMA, ShortGPT/Minitron, the LLaMA and voice-assistant theses):
#
# | metric     | importance of block i                                   | needs            |
# |------------|---------------------------------------------------------|------------------|
# | magnitude  | Σ \|W\| over the block's weights                          | weights only     |
# | taylor     | Σ \|W ⊙ ∂L/∂W\| (first-order loss change if W → 0)        | one backward     |
# | ppl        | perplexity with block i skipped                           | L forwards       |
# | block      | mean over tokens of 1 − cos(x_i, x_{i+1})                 | one forward      |
#
# plus the data-free rule of the GPT-2 slides: remove blocks symmetrically from
# the middle. We run all of them on the two tiny models and compare what each
# would remove and what that costs in perplexity on held-out text (the lessons'
# one yardstick, `common.ppl`).

# %%
import numpy as np

import minislm
import common
from common import calibration, load_tiny, pyplot, save_figure, toolcall_model, toolcall_score
from minislm.prune import depth

_seen = {}


def ppl(model) -> float:
    """common.ppl, remembered per set of weight arrays: many metrics pick the same blocks."""
    key = tuple(sorted((n, id(v)) for n, v in model.params.items()))
    if key not in _seen:
        _seen[key] = common.ppl(model)
    return _seen[key]


models = {name: load_tiny(name) for name in ("gpt2", "llama")}
calib = {name: calibration(m) for name, m in models.items()}   # 8 windows of the train split
dense = {name: ppl(m) for name, m in models.items()}
for name, m in models.items():
    print(f"tiny-{name}: {m.config.n_layer} blocks, {m.num_params():,} parameters, "
          f"validation perplexity {dense[name]:.2f}")

# %% [markdown]
# ## Block influence in four lines
# The last metric needs only the residual stream before and after each block
# (`hidden_states` collects x_0 … x_L). A block that barely turns its input
# (cosine near 1) changes little, so it is a candidate for removal.

# %%
gpt2, hidden = models["gpt2"], []
minislm.forward(gpt2, calib["gpt2"], hidden_states=hidden)          # L+1 × [B, T, C]
x_in, x_out = np.stack(hidden[:-1]), np.stack(hidden[1:])           # [L, B, T, C]
cos = (x_in * x_out).sum(-1) / (np.linalg.norm(x_in, axis=-1) * np.linalg.norm(x_out, axis=-1))
influence = (1 - cos).mean(axis=(1, 2))                             # [L]
np.testing.assert_allclose(influence, depth.block_importance(gpt2, calib["gpt2"]), rtol=1e-4)
print("block influence by hand:", np.round(influence, 4), "= depth.block_importance")

# %% [markdown]
# **Reference.** transformers runs the same checkpoint; forward hooks on its
# blocks catch each block's input and output, and the influence computed from
# them must agree (GPT-2's `output_hidden_states` would not do: its last entry
# is taken after the final LayerNorm).

# %%
import torch                                            # noqa: E402  (reference only)
import transformers                                     # noqa: E402

hf = transformers.AutoModelForCausalLM.from_pretrained(common.WEIGHTS / "tiny-gpt2").eval()
caught = []
hooks = [block.register_forward_hook(lambda mod, args, out: caught.append(
    (args[0], out[0] if isinstance(out, tuple) else out))) for block in hf.transformer.h]
with torch.no_grad():
    hf(torch.from_numpy(calib["gpt2"]).long())
for h in hooks:
    h.remove()
hf_influence = np.array([(1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean().item()
                         for a, b in caught])
np.testing.assert_allclose(hf_influence, influence, rtol=1e-3, atol=1e-5)
print("transformers' blocks give the same influence:", np.round(hf_influence, 4))

# %% [markdown]
# ## The four importance scores
#
# Each metric gives one number per block; higher means "keep". The scales are
# unrelated, so we also print each metric's ranking (0 = first to go).

# %%
METRICS = ("magnitude", "taylor", "ppl", "block")
scores = {name: {metric: depth.importance(m, metric, calib[name]) for metric in METRICS}
          for name, m in models.items()}
for name, m in models.items():
    print(f"\ntiny-{name}   " + "".join(f"{metric:>18s}" for metric in METRICS))
    ranks = {metric: np.argsort(np.argsort(s, kind="stable")) for metric, s in
             scores[name].items()}
    for i in range(m.config.n_layer):
        print(f"block {i:2d}   " + "".join(f"{scores[name][metric][i]:12.4g} (#{ranks[metric][i]})"
                                         for metric in METRICS))

# %% [markdown]
# A picture of the two data-driven extremes: block influence (one forward)
# against the perplexity without the block (L forwards). Block 0 towers in
# both: it turns token embeddings into something the rest can read.

# %%
plt, fig = pyplot(), None
if plt:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, (name, m) in zip(axes, models.items()):
        blocks = np.arange(m.config.n_layer)
        first = name == "gpt2"                  # one legend entry per series
        ax.bar(blocks - 0.2, scores[name]["block"], 0.4,
               label="block influence 1 − cos" if first else None)
        ax.set_xlabel("block")
        ax.set_title(f"tiny-{name}")
        ax.set_ylabel("block influence")
        twin = ax.twinx()
        twin.bar(blocks + 0.2, scores[name]["ppl"], 0.4, color="tab:orange",
                 label="calibration ppl without the block" if first else None)
        twin.set_yscale("log")
        twin.set_ylabel("ppl without the block (log)")
        ax.set_xticks(blocks)
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
save_figure(fig, "09_block_influence")

# %% [markdown]
# ## Remove one or two blocks by each metric
#
# The first and last blocks are protected, as in the thesis (it protects the
# first 4 and the last 2 of LLaMA-3.2-1B's 16; our models are a quarter as deep,
# so one at each end). The symmetric rule ignores the data.

# %%
PROTECT = dict(protect_first=1, protect_last=1)
rows = []
for name, m in models.items():
    for k in (1, 2):
        for metric in METRICS + ("middle",):
            drop = depth.symmetric_middle(m.config.n_layer, k) if metric == "middle" else \
                depth.choose_blocks(scores[name][metric], k, **PROTECT)
            rows.append((name, k, metric, drop, ppl(depth.remove_layers(m, drop))))
print(f"{'model':8s} {'k':>2s} {'metric':10s} {'removed':>10s} {'ppl':>9s} {'× dense':>8s}")
for name, k, metric, drop, p in rows:
    print(f"{name:8s} {k:2d} {metric:10s} {str(drop):>10s} {p:9.2f} {p / dense[name]:8.2f}")

# %% [markdown]
# ## Perplexity vs depth
#
# Removing more and more blocks, always the least important by the perplexity
# metric (the thesis' choice), ranked once on the full model as the thesis does.

# %%
print(f"{'model':8s} {'layers':>6s} {'params':>10s} {'ppl':>10s}")
depth_table = {}
for name, m in models.items():
    L = m.config.n_layer
    for k in range(0, L - 1):
        pruned = m if k == 0 else depth.remove_layers(
            m, depth.choose_blocks(scores[name]["ppl"], k, protect_first=0, protect_last=0))
        depth_table[name, L - k] = ppl(pruned)
        print(f"{name:8s} {L - k:6d} {pruned.num_params():10,d} {depth_table[name, L - k]:10.2f}")

# %% [markdown]
# ## Franken models: skip and repeat without copying weights
#
# `forward(model, ids, layers=[...])` runs any block sequence; `select_layers`
# turns a sequence into a checkpoint (sharing the arrays) so we can measure it
# like any other model. The LLaMA thesis' Franken-LLaMA experiment found
# skipping middle blocks tolerable and repeating them harmful. Our tiny models
# disagree: repeating the middle block costs *less* than skipping it (and on
# the LLaMA even running every block twice beats skipping one). A middle
# block's update is small (block influence ≈ 0.04, above), so applying it
# twice moves the residual stream little, while skipping loses the update
# entirely. Both still cost perplexity against the dense model.

# %%
franken = {}
for name, m in models.items():
    L = m.config.n_layer
    mid = L // 2
    sequences = {"dense": list(range(L)),
                 "skip": [i for i in range(L) if i != mid],
                 "repeat": list(range(mid + 1)) + list(range(mid, L)),
                 "repeat all twice": [i for i in range(L) for _ in range(2)]}
    franken[name] = {label: ppl(depth.select_layers(m, seq)) for label, seq in sequences.items()}
    print(f"tiny-{name} (middle block {mid}): " + ", ".join(
        f"{label} {p:.2f}" for label, p in franken[name].items()))
    ids = calib[name][:1, :16]
    np.testing.assert_allclose(minislm.forward(m, ids, layers=sequences["repeat"]),
                               minislm.forward(depth.select_layers(m, sequences["repeat"]), ids),
                               rtol=1e-5, atol=1e-5)
    assert franken[name]["dense"] < franken[name]["repeat"] < franken[name]["skip"]
    assert franken[name]["repeat all twice"] > franken[name]["dense"]
assert franken["llama"]["repeat all twice"] < franken["llama"]["skip"]

# %% [markdown]
# ## What to take away
#
# The perplexity metric measures exactly what we care about, so the block it
# ranks least important costs little when removed — far less than the block it
# ranks most important (usually block 0, which turns token embeddings into
# something the rest can read; the block-importance column agrees). The cheap
# metrics (magnitude, Taylor, block importance) approximate the ranking with a
# fraction of the compute; compare their columns with the ppl column above.

# %%
for name, m in models.items():
    s = scores[name]["ppl"]
    inner = np.arange(1, m.config.n_layer - 1)
    best, worst = int(inner[np.argmin(s[inner])]), int(np.argmax(s))
    p_best, p_worst = ppl(depth.remove_layers(m, [best])), ppl(depth.remove_layers(m, [worst]))
    print(f"tiny-{name}: removing block {best} -> {p_best:.2f}; removing block {worst} -> "
          f"{p_worst:.2f} (dense {dense[name]:.2f})")
    assert p_best < p_worst
    assert depth_table[name, 2] > dense[name]   # half the blocks gone: clearly worse

# %% [markdown]
# ## And on the task
# The tool-calling model of lesson 07 (a tiny LLaMA fine-tuned on tool calls)
# loses one block chosen by block influence, first and last protected. Its
# perplexity on the docstring yardstick is in the thousands either way (it was
# fine-tuned away from docstrings), so here only the task score tells what the
# block was worth: without recovery training most tool calls break.

# %%
tool_model = toolcall_model()
tool_calib = calibration(tool_model)
drop = depth.choose_blocks(depth.importance(tool_model, "block", tool_calib), 1, **PROTECT)
pruned = depth.remove_layers(tool_model, drop)
tool = {"dense": toolcall_score(tool_model), f"without block {drop[0]}": toolcall_score(pruned)}
for label, r in tool.items():
    print(f"tool-calling model {label:16s} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  "
          f"parameters {r['parameters']:.0%}  all {r['all']:.0%}")
print(f"perplexity {ppl(tool_model):.2f} -> {ppl(pruned):.2f}")
assert tool[f"without block {drop[0]}"]["all"] < tool["dense"]["all"] / 2

# %% [markdown]
# **Reference.** Beyond the transformers check of block influence above there
# is no library to compare the *choice* with: which blocks to drop is the
# method itself, so we check its consequence (perplexity, task score) instead.
#
# ## Exercises (solutions in `lessons/solutions/09_depth_pruning.py`)
# 1. Unprotect the last block (`protect_last=0`) and remove one block of the
#    tiny GPT-2 by block influence. Predict which block goes, and whether the
#    perplexity is better or worse than removing the perplexity metric's choice.
# 2. Remove block 0 instead. Predict: the perplexity explodes (more than 10× the
#    dense model), as block 0's influence (≈ 0.9) foretells.
