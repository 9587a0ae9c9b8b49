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
# would remove and what that costs in perplexity on held-out text.

# %%
import os
from pathlib import Path

import numpy as np

import minislm
from minislm.calibration import calibration_batches
from minislm.data.corpus import corpus_text
from minislm.evaluate.perplexity import perplexity
from minislm.prune import depth

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("MINISLM_WEIGHTS", ROOT / "weights"))
EVAL_TEXT = corpus_text("validation")       # modules the models never trained on
EVAL_TOKENS, SEQLEN = 4096, 128
_seen = {}


def ppl(model) -> float:
    """Validation perplexity (first 4096 tokens), cached: many metrics pick the same blocks."""
    key = tuple(sorted((n, id(v)) for n, v in model.params.items()))
    if key not in _seen:
        _seen[key] = perplexity(model, EVAL_TEXT, seqlen=SEQLEN, limit=EVAL_TOKENS,
                                progress=False).perplexity
    return _seen[key]


models = {name: minislm.load(WEIGHTS / f"tiny-{name}") for name in ("gpt2", "llama")}
calib = {name: calibration_batches(m, None, n_samples=8, seqlen=SEQLEN, seed=0)
         for name, m in models.items()}      # 8 random windows of the corpus' train split
dense = {name: ppl(m) for name, m in models.items()}
for name, m in models.items():
    print(f"tiny-{name}: {m.config.n_layer} blocks, {m.num_params():,} parameters, "
          f"validation perplexity {dense[name]:.2f}")

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
# ## Remove one or two blocks by each metric
#
# The first and last blocks are protected, as in the thesis (it protects the
# first 4 and the last 2 of LLaMA-3.2-1B's 16; our models are a third as deep,
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
# `forward(model, ids, layers=[...])` runs any block sequence. The thesis'
# Franken-LLaMA experiment found skipping middle blocks tolerable and repeating
# blocks harmful; `select_layers` turns a sequence into a checkpoint (sharing
# the arrays) so we can measure it like any other model.

# %%
for name, m in models.items():
    L = m.config.n_layer
    mid = L // 2
    sequences = {"dense": list(range(L)),
                 f"skip {mid}": [i for i in range(L) if i != mid],
                 f"repeat {mid}": list(range(mid + 1)) + list(range(mid, L)),
                 "repeat all twice": [i for i in range(L) for _ in range(2)]}
    franken = {label: ppl(depth.select_layers(m, seq)) for label, seq in sequences.items()}
    print(f"tiny-{name}: " + ", ".join(f"{label} {p:.2f}" for label, p in franken.items()))
    ids = calib[name][:1, :16]
    np.testing.assert_allclose(minislm.forward(m, ids, layers=sequences[f"repeat {mid}"]),
                               minislm.forward(depth.select_layers(m, sequences[f"repeat {mid}"]),
                                               ids), rtol=1e-5, atol=1e-5)
    assert franken["repeat all twice"] > franken["dense"], "repeating blocks should hurt"

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
