# %% [markdown]
# # Lesson 05 — Training a tiny model
#
# Lesson 04 computed ∂loss/∂θ by hand. Training repeats four lines:
#
#     ids    = B random windows of T tokens from the corpus     (labels = ids)
#     loss, g = value_and_grad(model, ids, ids)                  next-token cross-entropy
#     g      = g · min(1, c / ‖g‖)                               clip the global norm
#     θ      = AdamW(θ, g, η(step))                              warm-up, then cosine decay
#
# The corpus is text every Python installation carries — the help topics and
# standard-library docstrings (`minislm.data.corpus`) — so this runs offline.
# We do one step by hand, then a short run of a very small LLaMA from scratch
# (seconds), and compare it with the shipped `weights/tiny-llama`, trained the
# same way for longer (command and curve in `weights/README.md`).

# %%
import json
import math

import numpy as np

import minislm
from common import PPL_SEQLEN, WEIGHTS, load_tiny, ppl, pyplot, save_figure, yardstick_ids
from minislm.config import Config
from minislm.data.corpus import default_corpus
from minislm.tokenizer import decode, encode
from minislm.train.data import eval_windows, random_batch, token_stream, unigram_perplexity
from minislm.train.init import hf_config_dict, init_model
from minislm.train.optim import AdamWState, adamw_step, clip_by_global_norm, learning_rate
from minislm.train.trainer import TrainOptions, evaluate_loss, train

shipped = load_tiny("llama")
tokenizer = shipped.tokenizer                       # the byte-level BPE of the shipped models
corpus = default_corpus()
train_stream = token_stream(tokenizer, corpus["train"][:2000])    # a slice keeps it quick
# The lessons' yardstick windows (common.ppl): e^(mean loss on them) is ppl(model).
val_windows = eval_windows(yardstick_ids(shipped), PPL_SEQLEN)
print(f"{train_stream.size:,} training tokens, {val_windows.size:,} validation tokens, "
      f"vocabulary {tokenizer.get_vocab_size()}")

# %% [markdown]
# ## A new model
# `init_model` draws every matrix from N(0, 0.02²) (the projections writing into
# the residual stream from N(0, (0.02/√(2L))²)) and sets norm gains to 1. At
# that point every token is about equally likely, so the loss is ≈ ln V.

# %%
config = Config.from_hf_dict(hf_config_dict(
    "llama", vocab_size=tokenizer.get_vocab_size(), d_model=64, n_layer=2, n_head=4,
    n_kv_head=2, d_ff=192, max_position=PPL_SEQLEN, tied=True, eos_id=0, bos_id=0))
model = init_model(config, seed=0, tokenizer=tokenizer)
print(f"{model.num_params():,} parameters; ln V = {math.log(config.vocab_size):.3f}")


def sample(m, prompt="Return the", n=16):
    ids = encode(m.tokenizer, prompt)
    return prompt + decode(m.tokenizer, minislm.generate(m, np.array([ids]), n)[0, len(ids):])


before_text = sample(model)
before = evaluate_loss(model, val_windows)
print(f"validation loss {before:.3f}; greedy sample: {before_text!r}")

# %% [markdown]
# ## One step by hand
# The gradient points uphill; AdamW steps downhill with a per-parameter step
# size (its moments m, v normalise each gradient by its running scale). Written
# first, for every parameter θ with gradient g at step t:
#
#     clip:  g ← g · min(1, c / ‖g‖₂)            ‖g‖₂ over all parameters together
#     m ← β₁ m + (1 − β₁) g,    v ← β₂ v + (1 − β₂) g²
#     θ ← θ (1 − ηλ) − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
#
# with weight decay λ on matrices only (norm gains are not decayed).

# %%
def clip_by_hand(grads, c):
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    return {name: g * np.float32(min(1.0, c / norm)) for name, g in grads.items()}, norm


def adamw_by_hand(theta, g, m, v, t, lr, weight_decay, betas=(0.9, 0.95), eps=1e-8):
    b1, b2 = betas
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    decay = weight_decay if theta.ndim >= 2 else 0.0
    step = lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return theta * (1 - lr * decay) - step, m, v


params = {k: v.copy() for k, v in model.params.items()}     # our copy; the model stays as is
ids = random_batch(train_stream, batch_size=8, seq_len=64, seed=0, step=0)   # [8, 64]
loss, grads = minislm.value_and_grad(model, ids, ids)
grads, norm = clip_by_global_norm(grads, 0.5)
by_hand, norm_by_hand = clip_by_hand(minislm.value_and_grad(model, ids, ids)[1], 0.5)
assert math.isclose(norm, norm_by_hand, rel_tol=1e-4) and norm > 0.5, "clipping must bite here"
state = AdamWState()
adamw_step(params, grads, state, lr=1e-2, weight_decay=0.1)
for name, g in by_hand.items():
    theta, m, v = adamw_by_hand(model.params[name], g, 0.0, 0.0, 1, lr=1e-2, weight_decay=0.1)
    assert np.allclose(theta, params[name], atol=1e-6) and np.allclose(m, state.m[name], rtol=1e-4, atol=1e-9)
after_one, _ = minislm.value_and_grad(model.replace(params=params), ids, ids)
print(f"batch loss {loss:.4f} -> {after_one:.4f} after one AdamW step (‖g‖ = {norm:.2f}, "
      f"clipped to 0.5); by hand = the library's clipping and AdamW")
assert after_one < loss

# %% [markdown]
# ## Against torch.optim.AdamW
# The same step by PyTorch's optimizer (two parameter groups: decayed matrices,
# undecayed gains) must land on the same parameters.

# %%
try:
    import torch
except ImportError:
    print("torch not installed (pip install -e '.[reference]'): comparison skipped")
else:
    tensors = {name: torch.tensor(model.params[name], requires_grad=True) for name in grads}
    groups = [{"params": [t for n, t in tensors.items() if t.ndim >= 2], "weight_decay": 0.1},
              {"params": [t for n, t in tensors.items() if t.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for name, t in tensors.items():
        t.grad = torch.tensor(grads[name])
    optimizer.step()
    gap = max(float(np.abs(t.detach().numpy() - params[name]).max()) for name, t in tensors.items())
    print(f"torch.optim.AdamW, one step: max |Δθ| = {gap:.1e}")
    assert gap < 1e-6

# %% [markdown]
# ## A short run
# `train` loops those lines with a warm-up + cosine learning-rate schedule.

# %%
options = TrainOptions(steps=80, batch_size=8, seq_len=64, lr=1e-2, min_lr=1e-3, warmup=10,
                       seed=0, eval_every=20)
print("learning rate at steps 0, 9, 40, 79:",
      [f"{learning_rate(s, 80, 1e-2, 10, 1e-3):.4f}" for s in (0, 9, 40, 79)])
trained, history = train(model, train_stream, options, val_windows=val_windows, progress=False)
for h in history:
    if "val_loss" in h:
        print(f"step {h['step']:3d}  train loss {h['loss']:.3f}  validation loss "
              f"{h['val_loss']:.3f}")
after = history[-1]["val_loss"]
print(f"greedy sample before: {before_text!r}")
print(f"greedy sample after:  {sample(trained)!r}")

plt = pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="training batch")
    evals = [h for h in history if "val_loss" in h]
    ax.plot([h["step"] for h in evals], [h["val_loss"] for h in evals], "o-",
            label="validation (yardstick windows)")
    ax.axhline(math.log(config.vocab_size), color="gray", ls=":", label="ln V (uniform guess)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("A 2-layer LLaMA from scratch, 80 AdamW steps")
    ax.legend()
    save_figure(fig, "05_training_curve")

# %% [markdown]
# ## Compared with the shipped model and a unigram model
# A unigram model predicts every token by its frequency alone, ignoring
# context. That is the first thing a language model learns: after 80 steps our
# model sits near the unigram perplexity (its samples repeat frequent tokens).
# Getting clearly below it means using the context, which takes longer: the
# shipped tiny-llama (≈1.8 M parameters, trained with the same code on 30
# times more tokens, computed below from its `train_summary.json`) is far below
# it. Perplexity = e^loss, on the lessons' yardstick windows (`common.ppl`).

# %%
summary = json.loads((WEIGHTS / "tiny-llama" / "train_summary.json").read_text())
our_tokens = options.steps * options.batch_size * options.seq_len
more = summary["tokens_seen"] / our_tokens
print(f"tokens seen: ours {our_tokens:,}, shipped {summary['tokens_seen']:,} ({more:.0f}x more)")
assert 25 < more < 35, "the text says 30 times"
unigram = unigram_perplexity(train_stream, val_windows, config.vocab_size)
shipped_ppl = ppl(shipped)
assert math.isclose(math.exp(evaluate_loss(shipped, val_windows)), shipped_ppl, rel_tol=1e-4)
print(f"perplexity: unigram {unigram:.1f} | 80 steps {math.exp(after):.1f} | "
      f"shipped tiny-llama {shipped_ppl:.2f} | untrained {math.exp(before):.1f}")
print(f"shipped model: {sample(shipped, n=24)!r}")
assert after < before - 1.0, "80 steps must lower the validation loss by more than 1 nat"
assert shipped_ppl < unigram < math.exp(before)

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/05_training_a_tiny_model.py`)
# 1. Clip the gradient to norm 0.05 instead of 0.5 before the first AdamW
#    step. Predict: the step changes by a few percent, not 10× — Adam divides
#    each gradient by its own scale, so only gradients already near ε shrink
#    (plain SGD's step would shrink 10×).
# 2. Take the first step with weight decay 0 instead of 0.1. Predict: norm
#    gains are identical; every matrix differs by exactly η·λ·θ.
# 3. Train the same 80 steps with a 10× smaller peak learning rate. Predict: a
#    higher validation loss at step 80.
