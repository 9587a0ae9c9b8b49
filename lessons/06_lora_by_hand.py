# %% [markdown]
# # Lesson 06 — LoRA by hand
#
# Fine-tuning every weight of a model means storing a second full copy for
# each task. LoRA (Hu et al. 2021) freezes the pretrained weight W₀ and learns
# a low-rank correction instead:
#
#     y = x W₀ᵀ + (α/r) · drop(x) Aᵀ Bᵀ          A [r, d_in], B [d_out, r], r ≪ d
#
# A starts Kaiming-uniform and B at zero, so the adapted model starts out
# *exactly* the pretrained one; only A and B (r·(d_in + d_out) numbers per
# layer) receive gradients. The LLaMA thesis recovers its pruned models with
# r = 8, dropout 0.1 on the attention projections; we do the same on the tiny
# LLaMA, check the hand-written adapter gradients against finite differences
# and against PEFT + torch autograd, train briefly, merge, and save the
# adapter in PEFT's file format.

# %%
import tempfile
from pathlib import Path

import numpy as np

import minislm
from common import WEIGHTS, load_tiny, pyplot, save_figure, side_by_side
from minislm.adapt import finetune as ft
from minislm.adapt import lora
from minislm.train.backward import loss_and_grads

base = load_tiny("llama")
model = lora.add_lora(base, rank=8, alpha=16, dropout=0.1, targets=["q_proj", "v_proj"], seed=0)
adapters = lora.lora_weights(model)
n_adapter = sum(w.A.size + w.B.size for w in adapters.values())
print(f"{len(adapters)} adapted layers, {n_adapter:,} trainable numbers = "
      f"{100 * n_adapter / base.num_params():.2f} % of {base.num_params():,}")
probe = np.array([base.tokenizer.encode("User: Call Mom.\nAssistant:").ids])
same = np.abs(minislm.forward(model, probe) - minislm.forward(base, probe)).max()
print(f"B = 0 at init: max |logit difference| = {same}")
assert same == 0.0

# %% [markdown]
# ## One layer, written first: the forward and the backward
# With s = α/r, h = drop(x) Aᵀ and dy = ∂L/∂y:
#
#     y     = x W₀ᵀ + s · h Bᵀ
#     ∂L/∂B = s · dyᵀ h                 [d_out, r]
#     ∂L/∂A = (s · dy B)ᵀ drop(x)       [r, d_in]
#     ∂L/∂x = dy W₀ + (s · dy B A) ⊙ mask
#
# We write them for layer 0's q_proj adapter (a non-zero B and a fixed dropout
# mask, in float64), check them against `LoraLinear.linear` / `linear_backward`,
# and check those against central finite differences of L = Σ dy ⊙ y.

# %%
rng = np.random.default_rng(0)
name = next(iter(adapters))
w = adapters[name]
w = w.replace(base=w.base.astype(np.float64), A=w.A.astype(np.float64),
              B=rng.normal(size=w.B.shape) * 0.1, dropout_seed=(1, 0))
x = rng.normal(size=(2, 5, w.A.shape[1]))
dy = rng.normal(size=(2, 5, w.B.shape[0]))

s_ = w.alpha / w.rank
mask = w._keep(x)                                   # the layer's own dropout multiplier m/(1-p)
h = (x * mask) @ w.A.T                              # [2, 5, r]
y_by_hand = x @ w.base.T + s_ * h @ w.B.T
dB_by_hand = s_ * np.einsum("bto,btr->or", dy, h)
dh = s_ * dy @ w.B                                  # [2, 5, r]
dA_by_hand = np.einsum("btr,bti->ri", dh, x * mask)
dx_by_hand = dy @ w.base + (dh @ w.A) * mask
dx, grads = w.linear_backward(x, dy)
assert np.allclose(y_by_hand, w.linear(x)) and np.allclose(dx_by_hand, dx)
assert np.allclose(dA_by_hand, grads["lora_A"]) and np.allclose(dB_by_hand, grads["lora_B"])
print("LoRA forward and backward by hand = LoraLinear.linear / linear_backward")

worst = 0.0
for part, arr in (("A", w.A), ("B", w.B)):
    for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(6)]:
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        numeric = (float((w.replace(**{part: plus}).linear(x) * dy).sum())
                   - float((w.replace(**{part: minus}).linear(x) * dy).sum())) / 2e-6
        analytic = grads[f"lora_{part}"][idx]
        worst = max(worst, abs(analytic - numeric) / max(abs(numeric), 1e-8))
print(f"{name}: worst relative error of dA, dB vs finite differences = {worst:.1e}")
assert worst < 1e-6

# %% [markdown]
# ## The whole model against PEFT + torch autograd
# The same adapter loaded into `peft` on the transformers model (if the
# reference extra is installed): loss and every dA, dB from our hand-written
# backward against torch's autograd, in float64.

# %%
try:
    import peft
    import torch
    import transformers
except ImportError:
    peft = None
    print("peft/torch not installed: skipping the autograd comparison")
if peft is not None:
    m64 = load_tiny("llama", dtype=np.float64)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    hf = transformers.AutoModelForCausalLM.from_pretrained(WEIGHTS / "tiny-llama",
                                                           dtype=torch.float64)
    pm = peft.get_peft_model(hf, cfg).double()
    lm64 = lora.add_lora(m64, rank=8, alpha=16, targets=["q_proj", "v_proj"], seed=0)
    lm64 = lora.with_trainable(lm64, {k: (v if k.endswith("A") else rng.normal(size=v.shape) * 0.05)
                                      for k, v in lora.trainable(lm64).items()})
    with torch.no_grad():
        for n, lw in lora.lora_weights(lm64).items():
            module = pm.base_model.model.get_submodule(n[: -len(".weight")])
            module.lora_A["default"].weight.copy_(torch.from_numpy(lw.A))
            module.lora_B["default"].weight.copy_(torch.from_numpy(lw.B))
    ids = np.array([m64.tokenizer.encode("User: Navigate to the airport.\nAssistant: ok").ids])
    ours_loss, ours = loss_and_grads(lm64, ids, ids, trainable=lambda n: False)
    logits = pm(torch.from_numpy(ids)).logits
    ref_loss = torch.nn.functional.cross_entropy(logits[0, :-1], torch.from_numpy(ids[0, 1:]))
    ref_loss.backward()
    errors = []
    for n in lora.lora_weights(lm64):
        module = pm.base_model.model.get_submodule(n[: -len(".weight")])
        for part in ("lora_A", "lora_B"):
            ref = getattr(module, part)["default"].weight.grad.numpy()
            errors.append(np.abs(ours[n][part] - ref).max() / np.abs(ref).max())
    print(f"loss ours {ours_loss:.10f} torch {ref_loss.item():.10f}; worst relative gradient "
          f"error over {len(errors)} adapter tensors = {max(errors):.1e}")
    assert max(errors) < 1e-5

# %% [markdown]
# ## Train the adapters on the tool-call task, then merge
# 40 AdamW steps on the tool-call training split (loss on the answer only).
# Merging folds ΔW = s·B·A into W₀: the merged model is a plain checkpoint with
# no extra latency, and unmerging subtracts ΔW again.

# %%
examples = ft.load_examples(base.tokenizer, "toolcall", base.config.max_position)
tuned, losses = ft.finetune(model, examples, steps=40, lr=3e-3, batch_size=16, progress=False)
print(f"LoRA training loss {losses[0]:.3f} -> {np.mean(losses[-5:]):.3f}")
assert np.mean(losses[-5:]) < losses[0]
merged = lora.merge(tuned)
gap = np.abs(minislm.forward(merged, probe) - minislm.forward(tuned, probe)).max()
restored = lora.unmerge(merged, tuned)
w0_error = max(np.abs(restored.params[n].base - base.params[n]).max() for n in adapters)
print(f"merged vs adapter logits: {gap:.1e}; W₀ recovered by unmerge to {w0_error:.1e}")
assert gap < 1e-4 and w0_error < 1e-5

with tempfile.TemporaryDirectory() as folder:
    lora.save_adapter(tuned, folder, base_model_name_or_path="weights/tiny-llama")
    sizes = {p.name: p.stat().st_size for p in Path(folder).iterdir()}
    print("PEFT adapter files:", sizes)
    again = lora.load_adapter(base, folder)
    assert np.array_equal(minislm.forward(again, probe), minislm.forward(tuned, probe))
    if peft is not None:                           # PEFT reads our file on transformers' model
        hf = transformers.AutoModelForCausalLM.from_pretrained(WEIGHTS / "tiny-llama")
        with torch.no_grad():
            ref = peft.PeftModel.from_pretrained(hf, folder).eval()(torch.from_numpy(probe)).logits
        gap = np.abs(ref.numpy() - minislm.forward(tuned, probe)).max()
        print(f"peft.PeftModel.from_pretrained on the saved adapter: max |Δ logits| = {gap:.1e}")
        assert gap < 1e-4

# %% [markdown]
# ## How much rank does the task need?
# 20 steps each with r = 1, 2, 4 and 8 (α = 2r, so s = 2 throughout; no
# dropout, to compare the ranks alone). The loss is the mean of the last 5
# training batches. On this task more rank buys a lower loss at every step of
# the range: r = 1 learns least, r = 8 most.

# %%
RANKS = (1, 2, 4, 8)


def lora_run(rank):
    start = lora.add_lora(base, rank=rank, alpha=2 * rank, targets=["q_proj", "v_proj"], seed=0)
    return ft.finetune(start, examples, steps=20, lr=3e-3, batch_size=16, progress=False)[1]


rank_losses = {r: float(np.mean(run[-5:])) for r, run in zip(RANKS, side_by_side(
    lora_run, *((r,) for r in RANKS)))}
print("final loss by rank:", {r: round(v, 3) for r, v in rank_losses.items()})
assert all(v < losses[0] for v in rank_losses.values()), "every rank learns something"
assert all(np.diff(list(rank_losses.values())) < 0), "the loss falls as the rank grows"
plt = pyplot()
if plt is not None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(RANKS, list(rank_losses.values()), "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(RANKS, [str(r) for r in RANKS])
    ax.set_xlabel("LoRA rank r (q_proj, v_proj)")
    ax.set_ylabel("training loss after 20 steps")
    ax.set_title("tiny-llama on the tool-call task")
    save_figure(fig, "06_lora_rank_vs_loss")

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/06_lora_by_hand.py`)
# 1. Initialise B randomly instead of at zero. Predict: the adapted model no
#    longer starts as the pretrained one (its logits differ at step 0).
# 2. Double α at a fixed rank. Predict: ΔW = (α/r)·B·A doubles exactly, and so
#    do ∂L/∂A and ∂L/∂B (both carry the factor s).
# 3. Adapt all seven projections instead of q_proj and v_proj at r = 8.
#    Predict the trainable count before running: r·(d_in + d_out) summed over
#    the adapted layers.
