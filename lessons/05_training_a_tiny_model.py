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
import math
from pathlib import Path

import numpy as np

import minislm
from minislm.config import Config
from minislm.data.corpus import default_corpus
from minislm.tokenizer import decode, encode
from minislm.train.data import eval_windows, random_batch, token_stream, unigram_perplexity
from minislm.train.init import hf_config_dict, init_model
from minislm.train.optim import AdamWState, adamw_step, clip_by_global_norm, learning_rate
from minislm.train.trainer import TrainOptions, evaluate_loss, train

ROOT = Path(__file__).resolve().parents[1]
shipped = minislm.load(ROOT / "weights" / "tiny-llama")
tokenizer = shipped.tokenizer                       # the byte-level BPE of the shipped models
corpus = default_corpus()
train_stream = token_stream(tokenizer, corpus["train"][:2000])    # a slice keeps it quick
val_windows = eval_windows(token_stream(tokenizer, corpus["validation"]), 64, 4096)
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
    n_kv_head=2, d_ff=192, max_position=64, tied=True, eos_id=0, bos_id=0))
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
# size (its moments m, v normalise each gradient by its running scale). On the
# same batch the loss must go down.

# %%
params = {k: v.copy() for k, v in model.params.items()}     # our copy; the model stays as is
ids = random_batch(train_stream, batch_size=8, seq_len=64, seed=0, step=0)   # [8, 64]
loss, grads = minislm.value_and_grad(model, ids, ids)
grads, norm = clip_by_global_norm(grads, 1.0)
adamw_step(params, grads, AdamWState(), lr=1e-2, weight_decay=0.1)
after_one, _ = minislm.value_and_grad(model.replace(params=params), ids, ids)
print(f"batch loss {loss:.4f} -> {after_one:.4f} after one AdamW step (‖g‖ = {norm:.2f})")
assert after_one < loss

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

# %% [markdown]
# ## Compared with the shipped model and a unigram model
# A unigram model predicts every token by its frequency alone, ignoring
# context. That is the first thing a language model learns: after 80 steps our
# model sits near the unigram perplexity (its samples repeat frequent tokens).
# Getting clearly below it means using the context, which takes longer: the
# shipped tiny-llama (≈1.8 M parameters, trained with the same code on a few
# hundred times more tokens) is far below it. Perplexity = e^loss.

# %%
unigram = unigram_perplexity(train_stream, val_windows, config.vocab_size)
shipped_loss = evaluate_loss(shipped, val_windows)
print(f"perplexity: unigram {unigram:.1f} | 80 steps {math.exp(after):.1f} | "
      f"shipped tiny-llama {math.exp(shipped_loss):.1f} | untrained {math.exp(before):.1f}")
print(f"shipped model: {sample(shipped, n=24)!r}")
assert after < before - 1.0, "80 steps must lower the validation loss by more than 1 nat"
assert math.exp(shipped_loss) < unigram < math.exp(before)
