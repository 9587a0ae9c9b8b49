# %% [markdown]
# # Lesson 10 — Width trimming: fewer heads, neurons and channels
#
# Depth pruning removes whole blocks. Width trimming keeps every block but
# makes it thinner (Minitron; the voice-assistant thesis §5.4.1; the GPT-2
# slides' "768 → 384 dimensions, 12 → 6 heads"):
#
# Minitron (Muralidharan et al. 2024 §2.2) scores each part by the size of its
# activation on calibration text, aggregated as a **mean over the sequence,
# then an L2 norm over the batch** (the combination the paper found best):
#
# * **attention head** h: F_h = ‖ mean_t ‖O_bt,h‖₂ ‖₂ over b, with O_h the head's
#   attention output (what o_proj / c_proj reads, D channels per head);
# * **MLP neuron** j: F_j = ‖ mean_t |A_bt,j| ‖₂ over b, with A the intermediate
#   activation (what the down projection reads);
# * **embedding channel** c: the same on every LayerNorm/RMSNorm output, summed
#   over the norms.
#
# The voice-assistant thesis uses other formulas (heads ‖A_q‖₂ + ‖A_k‖₂ + ‖A_v‖₂,
# neurons the gate output's L2 over the batch averaged over positions);
# `width_importance(..., importance="voice-thesis")` computes those, and the
# last table compares the two.
#
# Then the weight matrices are *sliced*: the saved file really shrinks and any
# loader (transformers included) runs it, unlike unstructured sparsity (lesson 11).

# %%
import os
import tempfile
from pathlib import Path

import numpy as np

import minislm
from minislm.calibration import calibration_batches
from minislm.data.corpus import corpus_text
from minislm.evaluate.perplexity import perplexity
from minislm.prune import width

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("MINISLM_WEIGHTS", ROOT / "weights"))
OUT = Path(os.environ.get("MINISLM_LESSON_OUT", tempfile.mkdtemp()))
EVAL_TEXT = corpus_text("validation")
EVAL_TOKENS, SEQLEN = 4096, 128


def ppl(model) -> float:
    return perplexity(model, EVAL_TEXT, seqlen=SEQLEN, limit=EVAL_TOKENS,
                      progress=False).perplexity


def file_mib(model, name) -> float:
    folder = minislm.save(model, OUT / name)
    return (folder / "model.safetensors").stat().st_size / 2 ** 20


models = {name: minislm.load(WEIGHTS / f"tiny-{name}") for name in ("gpt2", "llama")}
calib = {name: calibration_batches(m, None, n_samples=8, seqlen=SEQLEN, seed=0)
         for name, m in models.items()}
scores = {name: width.width_importance(m, calib[name]) for name, m in models.items()}

# %% [markdown]
# Minitron's neuron score in three lines: catch what the down projection reads
# (forward's `observer` sees every linear's input), average |A| over the
# sequence, take the L2 norm over the batch.

# %%
gpt2, seen = models["gpt2"], []
minislm.forward(gpt2, calib["gpt2"], observer=lambda name, x: seen.append(x)
                if name == "transformer.h.0.mlp.c_proj.weight" else None)
A = seen[0]                                                   # [B, T, F]
F0 = np.sqrt((np.abs(A).mean(axis=1) ** 2).sum(axis=0))       # [F]
assert np.allclose(F0, scores["gpt2"].neurons[0], rtol=1e-5)

# %% [markdown]
# ## What the importance scores look like
#
# Head scores per layer (the LLaMA model shares each key/value head between a
# group of query heads, so groups are kept or dropped whole, by the sum of their
# heads' scores, and heads compete only inside their group). A few channels of the residual stream carry
# most of the activation energy — the "outlier features" that also matter for WANDA.

# %%
for name, s in scores.items():
    m = models[name]
    print(f"tiny-{name}: H={m.config.n_head} K={m.config.n_kv_head} F={m.config.d_ff} "
          f"C={m.config.d_model}")
    for i, row in enumerate(s.heads):
        print(f"  layer {i} heads  " + " ".join(f"{v:7.1f}" for v in row))
    c = np.sort(s.channels)[::-1]
    print(f"  channels: top 5% carry {c[:max(1, len(c) // 20)].sum() / c.sum():.0%} of the "
          f"summed norm; max/median {c[0] / np.median(c):.1f}")

# %% [markdown]
# ## Trim each dimension alone, then together
#
# For every family we remove a quarter or half of one dimension at a time.
# GPT-2 ties the width to the heads (n_embd = n_head × head_dim), so for it
# "heads" and "hidden" are the same operation.

# %%
def configs(cfg):
    out = {"dense": {}, "ffn −25%": dict(ffn=cfg.d_ff * 3 // 4),
           "ffn −50%": dict(ffn=cfg.d_ff // 2)}
    if cfg.family == "llama":
        out["heads −50%"] = dict(heads=cfg.n_head // 2)
        step = 8
        out["hidden −25%"] = dict(hidden=cfg.d_model * 3 // 4 // step * step)
        out["heads+ffn+hidden"] = dict(heads=cfg.n_head // 2, ffn=cfg.d_ff // 2,
                                       hidden=cfg.d_model * 3 // 4 // step * step)
    else:
        out["heads+hidden −50% (slides)"] = dict(hidden=cfg.d_model // 2)
        out["…+ffn −50%"] = dict(hidden=cfg.d_model // 2, ffn=cfg.d_ff // 2)
    return out


table = []
for name, m in models.items():
    for label, sizes in configs(m.config).items():
        trimmed = width.width_trim(m, scores=scores[name], **sizes)
        c = trimmed.config
        table.append((name, label, c.n_head, c.n_kv_head, c.d_ff, c.d_model,
                      trimmed.num_params(), file_mib(trimmed, f"{name}-{len(table)}"),
                      ppl(trimmed)))
print(f"{'model':6s} {'trim':28s} {'H':>3s} {'K':>3s} {'F':>5s} {'C':>4s} {'params':>10s} "
      f"{'MiB':>6s} {'ppl':>9s}")
for row in table:
    print("{:6s} {:28s} {:3d} {:3d} {:5d} {:4d} {:10,d} {:6.2f} {:9.2f}".format(*row))

# %% [markdown]
# ## Does the ranking matter?
#
# Trim the same number of MLP neurons three ways: keep the most important half
# (the Minitron rule), a random half, or the least important half. If the score
# means anything, keeping the bottom half must hurt most. (On the tiny GPT-2 a
# random half is only a little worse than the top half: activation norm is a
# heuristic, and GELU neurons with large but nearly constant outputs act like
# biases the next layer has learned around. Minitron recovers with distillation.)

# %%
rng = np.random.default_rng(0)
for name, m in models.items():
    s = scores[name]
    half = m.config.d_ff // 2
    with_neurons = lambda n: width.WidthImportance(s.heads, n, s.channels)
    ranked = ppl(width.width_trim(m, scores=s, ffn=half))
    random = ppl(width.width_trim(m, scores=with_neurons(rng.random(s.neurons.shape)), ffn=half))
    reverse = ppl(width.width_trim(m, scores=with_neurons(-s.neurons), ffn=half))
    print(f"tiny-{name}: keep the top half of the neurons {ranked:.2f}, a random half "
          f"{random:.2f}, the bottom half {reverse:.2f}")
    assert ranked < reverse


# %% [markdown]
# ## Minitron's formula or the voice thesis'?
#
# Two of the trims again with the thesis' scores. Both are heuristics; which one
# keeps the perplexity lower depends on the model and the dimension.

# %%
for name, m in models.items():
    thesis = width.width_importance(m, calib[name], importance="voice-thesis")
    trims = configs(m.config)
    for label in ("ffn −50%", list(trims)[-1]):               # one dimension, then all of them
        sizes = trims[label]
        a, b = (ppl(width.width_trim(m, scores=s, **sizes)) for s in (scores[name], thesis))
        print(f"tiny-{name} {label:28s} minitron {a:9.2f}   voice-thesis {b:9.2f}")

# %% [markdown]
# ## The saved model is smaller and loads anywhere
#
# The trimmed checkpoint is an ordinary config with smaller numbers in it:
# a GPT-2 with n_embd halved and half the heads is what the slides call
# "architecture trimming" (there 768 → 384 and 12 → 6; here the same ratio).

# %%
m = models["gpt2"]
slides = width.width_trim(m, scores=scores["gpt2"], hidden=m.config.d_model // 2)
print(f"GPT-2: n_embd {m.config.d_model} -> {slides.config.d_model}, heads {m.config.n_head} -> "
      f"{slides.config.n_head}, file {file_mib(m, 'gpt2-dense'):.2f} -> "
      f"{file_mib(slides, 'gpt2-slides'):.2f} MiB")
back = minislm.load(OUT / "gpt2-slides")
ids = calib["gpt2"][:1, :16]
assert np.array_equal(minislm.forward(back, ids), minislm.forward(slides, ids))
assert slides.config.n_head == m.config.n_head // 2
assert file_mib(slides, "gpt2-slides") < 0.75 * file_mib(m, "gpt2-dense")
