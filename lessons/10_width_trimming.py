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
import shutil

import numpy as np

import minislm
from common import calibration, load_tiny, out_dir, ppl, toolcall_model, toolcall_score
from minislm.prune import width

SAVED = out_dir("10_width")                     # the trimmed checkpoints, rewritten every run


def file_mib(model, name) -> float:
    shutil.rmtree(SAVED / name, ignore_errors=True)
    folder = minislm.save(model, SAVED / name)
    return (folder / "model.safetensors").stat().st_size / 2 ** 20


models = {name: load_tiny(name) for name in ("gpt2", "llama")}
calib = {name: calibration(m) for name, m in models.items()}
scores = {name: width.width_importance(m, calib[name]) for name, m in models.items()}

# %% [markdown]
# Minitron's scores by hand: catch what the output and down projections read
# (forward's `observer` sees every linear's input), then
# * neuron j: average |A_bt,j| over the sequence, L2 norm over the batch;
# * head h: the L2 norm of the head's D output channels at each token, averaged
#   over the sequence, L2 norm over the batch.

# %%
gpt2, seen = models["gpt2"], {}
minislm.forward(gpt2, calib["gpt2"], observer=lambda name, x: seen.setdefault(name, x))
A = seen["transformer.h.0.mlp.c_proj.weight"]                 # [B, T, F]
F_neuron = np.sqrt((np.abs(A).mean(axis=1) ** 2).sum(axis=0))  # [F]
B, T, _ = A.shape
O = seen["transformer.h.0.attn.c_proj.weight"].reshape(B, T, gpt2.config.n_head, -1)
F_head = np.sqrt((np.linalg.norm(O, axis=-1).mean(axis=1) ** 2).sum(axis=0))   # [H]
np.testing.assert_allclose(F_neuron, scores["gpt2"].neurons[0], rtol=1e-5)
np.testing.assert_allclose(F_head, scores["gpt2"].heads[0], rtol=1e-5)
print("head and neuron scores by hand = width.width_importance (block 0 of tiny-gpt2)")

# %% [markdown]
# ## What the importance scores look like
#
# Head scores per layer (the LLaMA model shares each key/value head between a
# group of query heads, so groups are kept or dropped whole, by the sum of their
# heads' scores, and heads compete only inside their group). In large LLMs a
# few channels of the residual stream carry much of the activation ("outlier
# features", which also matter for WANDA). Our tiny models have none: the
# channel scores are nearly flat, as the top-5 % share shows.

# %%
for name, s in scores.items():
    m = models[name]
    print(f"tiny-{name}: H={m.config.n_head} K={m.config.n_kv_head} F={m.config.d_ff} "
          f"C={m.config.d_model}")
    for i, row in enumerate(s.heads):
        print(f"  layer {i} heads  " + " ".join(f"{v:7.1f}" for v in row))
    c = np.sort(s.channels)[::-1]
    top_share = c[:max(1, len(c) // 20)].sum() / c.sum()
    print(f"  channels: top 5% carry {top_share:.0%} of the summed norm; "
          f"max/median {c[0] / np.median(c):.1f}")
    assert top_share < 0.15                     # no outlier channels (5 % would be perfectly flat)

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
back = minislm.load(SAVED / "gpt2-slides")
ids = calib["gpt2"][:1, :16]
assert np.array_equal(minislm.forward(back, ids), minislm.forward(slides, ids))
assert slides.config.n_head == m.config.n_head // 2
assert file_mib(slides, "gpt2-slides") < 0.75 * file_mib(m, "gpt2-dense")

# %% [markdown]
# **Reference.** The trimmed checkpoints are ordinary transformers models:
# loaded by `AutoModelForCausalLM` from the saved folder, their logits must
# equal ours (GPT-2 at half width, the LLaMA with heads, FFN and hidden trimmed).

# %%
import torch                                            # noqa: E402  (reference only)
import transformers                                     # noqa: E402

transformers.logging.disable_progress_bar()
llama = models["llama"]
both = {"gpt2-slides": slides,
        "llama-all": width.width_trim(llama, scores=scores["llama"],
                                      **configs(llama.config)["heads+ffn+hidden"])}
for label, trimmed in both.items():
    file_mib(trimmed, label)
    hf = transformers.AutoModelForCausalLM.from_pretrained(SAVED / label).eval()
    ids = calib["llama" if label.startswith("llama") else "gpt2"][:2, :64]
    with torch.no_grad():
        theirs = hf(torch.from_numpy(ids).long()).logits.numpy()
    ours = minislm.forward(trimmed, ids)
    print(f"{label}: transformers vs minislm logits, max |Δ| {np.abs(theirs - ours).max():.2e}")
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)

# %% [markdown]
# ## And on the task
# The tool-calling model of lesson 07, its FFN trimmed by a quarter (no
# recovery training): how much of the task survives?

# %%
tool_model = toolcall_model()
tool_trimmed = width.width_trim(tool_model, calibration(tool_model),
                                ffn=tool_model.config.d_ff * 3 // 4)
tool = {"dense": toolcall_score(tool_model), "ffn −25%": toolcall_score(tool_trimmed)}
for label, r in tool.items():
    print(f"tool-calling model {label:9s} tool {r['tool']:.0%}  syntax {r['syntax']:.0%}  "
          f"parameters {r['parameters']:.0%}  all {r['all']:.0%}")
print(f"perplexity {ppl(tool_model):.2f} -> {ppl(tool_trimmed):.2f}")
assert tool["ffn −25%"]["all"] <= tool["dense"]["all"]

# %% [markdown]
# ## Exercises (solutions in `lessons/solutions/10_width_trimming.py`)
# 1. Halve the tiny LLaMA's query heads (`heads=H/2`). Predict the new config
#    (H, K) and the exact number of parameters removed: every block loses the
#    q rows and o columns of H/2 heads, 2 · (H/2) · D · C weights.
# 2. Trim the FFN by 25 % with scores from 1 calibration window instead of 8.
#    Predict: the scores move, but the perplexity stays within 10 % of the
#    8-window trim (activation norms average out quickly).
