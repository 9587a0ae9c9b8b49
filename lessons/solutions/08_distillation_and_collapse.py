"""Solutions to lesson 08's exercises; each asserts the predicted effect."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # lessons/: common.py
import minislm  # noqa: E402
from common import load_tiny  # noqa: E402
from minislm.adapt import distill  # noqa: E402
from minislm.adapt import finetune as ft  # noqa: E402
from minislm.prune.depth import remove_layers  # noqa: E402

teacher = load_tiny("llama")
student = remove_layers(teacher, [1, 2])
ids = np.array([ft.load_examples(teacher.tokenizer, "requirements", 64)[0][0]])
t_logits, s_logits = minislm.forward(teacher, ids), minislm.forward(student, ids)

# 1. A student equal to the teacher: nothing to learn.
for T in (1.0, 2.0, 8.0):
    _, grad, parts = distill.distillation_loss(t_logits, t_logits, ids, T, alpha=1.0)
    assert abs(parts["kd"]) < 1e-6 and np.abs(grad).max() < 1e-8
print("1. student = teacher: L_KD = 0 and ∂L_KD/∂s = 0 at T = 1, 2, 8")

# 2. Higher temperature, flatter teacher.
entropy = {}
for T in (1.0, 2.0, 8.0):
    p = np.exp(distill.log_softmax(t_logits[0, :-1] / T))
    entropy[T] = float(-(p * np.log(p + 1e-30)).sum(-1).mean())
print("2. teacher entropy (nats) by T:", {T: round(h, 2) for T, h in entropy.items()})
assert entropy[1.0] < entropy[2.0] < entropy[8.0]

# 3. At high T, q − p shrinks like 1/T, so (T/N)(q − p) — the gradient with T² — settles to a
#    constant; without the T² it would shrink like 1/T².
norm = {T: float(np.linalg.norm(distill.distillation_loss(s_logits, t_logits, ids, T, alpha=1.0)[1]))
        for T in (8.0, 32.0)}
with_t2, without_t2 = norm[32.0] / norm[8.0], (norm[32.0] / 32 ** 2) / (norm[8.0] / 8 ** 2)
print(f"3. |∂L/∂s| at T=32 over T=8: with T² {with_t2:.2f}, without {without_t2:.3f}")
assert 0.8 < with_t2 < 1.25 and without_t2 < 1 / 12
