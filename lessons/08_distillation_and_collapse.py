# %% [markdown]
# # Lesson 08 — Distillation, and when the student is too small
#
# Knowledge distillation trains a small *student* on a big *teacher*'s
# softened next-token distribution instead of (or beside) the one-hot labels:
#
#     L = α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y)
#
# The GPT-2 slides fine-tune GPT-2 on ISO requirement sentences first, then
# report that distilling into an aggressively trimmed student fails: "the
# student is too small to understand the teacher ... it starts repeating or
# hallucinating" ("The software must be able to to to to to ..."). We rebuild
# that experiment in miniature and measure it, whatever it shows:
#
# * teacher: the tiny LLaMA fine-tuned on the requirement sentences;
# * student A: the teacher with 2 of its 4 blocks removed (`prune.depth`) —
#   the same architecture, a moderate cut;
# * student B: a fresh 1-block model with d_model 32 — a drastic cut.
#
# Each student is trained for the same number of steps on the KL to the
# teacher (α = 1) and, as the control, on the labels alone (α = 0). Measured:
# perplexity on the held-out test sentences and the repetition rate of greedy
# continuations of the slides' own prompts (the fraction of generated bigrams
# that already occurred: 0 for fresh text, → 1 for "to to to to").

# %%
import numpy as np

import minislm
from common import load_tiny
from minislm.adapt import distill
from minislm.adapt import finetune as ft
from minislm.data.requirements import SLIDE_PROMPTS, requirements_dataset
from minislm.evaluate.perplexity import perplexity
from minislm.prune.depth import remove_layers
from minislm.train.init import init_model

STEPS, LR, BATCH, TEMPERATURE = 30, 3e-3, 16, 2.0
base = load_tiny("llama")
examples = ft.load_examples(base.tokenizer, "requirements", 64)
test_text = "\n".join(requirements_dataset()["test"])


def measure(model):
    """(held-out perplexity, mean repetition rate, first continuation) of a model."""
    ppl = perplexity(model, test_text, seqlen=128, progress=False).perplexity
    rates, texts = [], []
    for prompt in SLIDE_PROMPTS:
        ids = np.array(model.tokenizer.encode(prompt).ids)
        new = minislm.generate(model, ids, 24)[len(ids):]                   # greedy, stops at EOS
        rates.append(distill.repetition_rate(new))
        texts.append(prompt + model.tokenizer.decode(new.tolist()))
    return ppl, float(np.mean(rates)), texts[0]


# %% [markdown]
# ## The teacher: fine-tune first
# As the slides insist, the teacher is specialised on the task before anything
# is compressed.

# %%
teacher, _ = ft.finetune(base, examples, steps=40, lr=LR, batch_size=BATCH, progress=False)
rows = {"pretrained (no task)": (base, measure(base)), "teacher": (teacher, measure(teacher))}
trimmed = remove_layers(teacher, [1, 2])                  # keep the first and last block
narrow_config = teacher.config.replace(d_model=32, n_head=2, n_kv_head=1, head_dim=16,
                                       d_ff=64, n_layer=1)
narrow = init_model(narrow_config, seed=0, tokenizer=teacher.tokenizer)
rows["A: 2 blocks removed, untrained"] = (trimmed, measure(trimmed))

# %% [markdown]
# ## The distillation loss, written first
# With p = softmax(t/T) (teacher) and q = softmax(s/T) (student), over the N
# positions that have a next token:
#
#     L_KD = T² · (1/N) Σ_n Σ_v p_nv (log p_nv − log q_nv),    ∂L_KD/∂s = (T/N) (q − p)
#
# At high T the T² keeps the gradient's size independent of T (the softened
# q − p shrinks about like 1/T). Checked against the library's loss and
# gradient on the teacher and student A, and against torch's `kl_div`.

# %%
def log_softmax_by_hand(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


ids = np.array([examples[0][0]])
s_logits, t_logits = minislm.forward(trimmed, ids), minislm.forward(teacher, ids)  # [1, n, V]
log_q = log_softmax_by_hand(s_logits[0, :-1] / TEMPERATURE)      # the last position has no target
log_p = log_softmax_by_hand(t_logits[0, :-1] / TEMPERATURE)
N = log_q.shape[0]
kd_by_hand = TEMPERATURE ** 2 * (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
grad_by_hand = (TEMPERATURE / N) * (np.exp(log_q) - np.exp(log_p))
_, grad, parts = distill.distillation_loss(s_logits, t_logits, ids, TEMPERATURE, alpha=1.0)
assert np.isclose(kd_by_hand, parts["kd"], rtol=1e-5) and np.allclose(grad_by_hand, grad[0, :-1], atol=1e-8)
print(f"T²·KL by hand {kd_by_hand:.6f} = library {parts['kd']:.6f} (gradient too)")
try:
    import torch
except ImportError:
    print("torch not installed (pip install -e '.[reference]'): kl_div comparison skipped")
else:
    ref = TEMPERATURE ** 2 * torch.nn.functional.kl_div(
        torch.from_numpy(log_q), torch.from_numpy(log_p), reduction="batchmean", log_target=True)
    print(f"torch.nn.functional.kl_div(batchmean) · T² = {ref.item():.6f}")
    assert np.isclose(ref.item(), kd_by_hand, rtol=1e-5)

# %% [markdown]
# ## Train the students: distillation vs labels
# Same batches, steps and learning rate; only the loss differs.

# %%
for name, student in (("A", trimmed), ("B", narrow)):
    for alpha, how in ((1.0, "distilled"), (0.0, "labels only")):
        trained, history = distill.distill(teacher, student, examples, steps=STEPS,
                                           temperature=TEMPERATURE, alpha=alpha, lr=LR,
                                           batch_size=BATCH, progress=False)
        rows[f"{name}: {how}"] = (trained, measure(trained))

print(f"{'model':32s} {'params':>10s} {'test ppl':>9s} {'repetition':>11s}")
for name, (model, (ppl, rep, _)) in rows.items():
    print(f"{name:32s} {model.num_params():10,d} {ppl:9.2f} {rep:11.2f}")
for name, (_, (_, _, text)) in rows.items():
    print(f"{name:32s} {text[:90]!r}")

# %% [markdown]
# ## What the numbers say
# (each claim is asserted below)
# * Student A (same architecture, half the blocks) starts far better than a
#   fresh model would and recovers towards the teacher within a few dozen
#   steps, with either loss. The labels-only run even passes the teacher:
#   it has had 30 more steps on the task than the 40 the teacher got.
# * Student B (a seventh of the parameters, most of them in the embedding)
#   fails with both losses: its test perplexity ends above even the
#   pretrained model that never saw the task. *How* it fails depends on the
#   loss: distilled, its greedy text loops ("able to for for for for ...") —
#   the slides' collapse; trained on the labels, it ends the sentence at once
#   (a full stop, then EOS). The cause is capacity, not the KL term.
# * On this task, where every training sentence has its true label, the
#   soft targets did not beat the hard labels at equal steps (the two A
#   rows). Distillation pays when labels are scarce or when the teacher's
#   probabilities for near-miss tokens carry information the labels lack.

# %%
ppl_teacher = rows["teacher"][1][0]
ppl_a_before = rows["A: 2 blocks removed, untrained"][1][0]
ppl_a = rows["A: distilled"][1][0]
ppl_b = rows["B: distilled"][1][0]
rep_b = rows["B: distilled"][1][1]
assert ppl_teacher < rows["pretrained (no task)"][1][0]       # fine-tuning specialised it
assert ppl_a < ppl_a_before                                     # distillation recovers A
assert ppl_b > 3 * ppl_a                                        # B is far worse than A ...
assert rep_b > rows["A: distilled"][1][1]                       # ... and repeats itself more
assert rows["A: labels only"][1][0] < ppl_teacher                # labels-only A passes the teacher
assert min(ppl_b, rows["B: labels only"][1][0]) > rows["pretrained (no task)"][1][0]
assert rows["A: labels only"][1][0] <= ppl_a                     # soft targets did not beat labels
assert rows["B: labels only"][1][1] < rep_b                      # labels-only B does not loop

# %% [markdown]
# ## Exercises (solutions: `lessons/solutions/08_distillation_and_collapse.py`)
# 1. Distil the teacher into an exact copy of itself. Predict: L_KD = 0 and its
#    gradient is 0 at any temperature (KL(p ‖ p) = 0).
# 2. Raise T from 1 to 2 to 8. Predict: the teacher's softened distribution gets
#    flatter — its entropy rises with T.
# 3. Compare the gradient's size at T = 8 and T = 32. Predict: with T² it
#    hardly changes (q − p shrinks like 1/T, so (T/N)(q − p) settles); without
#    the T² factor it would shrink about 16×.
