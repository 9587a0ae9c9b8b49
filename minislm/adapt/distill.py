"""Knowledge distillation: a student trained on the teacher's softened distribution.

Hinton et al. 2015, §2; the loss of DistilBERT/DistilGPT-2 without the cosine
term. With student logits s, teacher logits t (both [B, T, V]), temperature T
and p = softmax(· / T) per position:

    L_KD = T² · (1/N) Σ_n KL(p_t,n ‖ p_s,n) = T² · (1/N) Σ_n Σ_v p_t,nv (log p_t,nv − log p_s,nv)
    L    = α · L_KD + (1 − α) · L_CE(s, y)            (α = 1: teacher only; α = 0: labels only)

over the N positions that have a next-token label (the same positions the
cross-entropy counts; prompt and padding positions are −100 and skipped).
The KL is the forward one, teacher first: the student is pushed to cover
every token the teacher finds likely.

Gradient of the KL term on the student's logits (the teacher is fixed):

    ∂L_KD/∂s_n = T² · (1/N) · (1/T) (p_s,n − p_t,n) = (T/N) (p_s,n − p_t,n)

Without the T² this gradient would shrink as 1/T² for large T (Hinton §2:
p_s − p_t ≈ (s − t − mean)/(V·T) once the logits are small against T); with
it, its size is about independent of T, so α means the same at any temperature.

Students (built outside this module: techniques never import each other):
a depth-trimmed copy of the teacher (`minislm.prune.depth`) and a narrower
freshly initialised model (`minislm.train.init.init_model`). The slides'
failure mode — a student too small to follow the teacher collapses into
repetition — is measured with `repetition_rate` of greedy continuations and
with perplexity.
"""
from __future__ import annotations

import numpy as np

from ..data.examples import pad_id_of, sample_batch
from ..errors import ConfigError, InputError
from ..model.forward import forward
from ..resources import forward_bytes
from ..train.backward import loss_and_grads
from ..train.loss import cross_entropy_backward, cross_entropy_forward, shift_labels
from . import finetune as ft
from . import lora


def log_softmax(z):
    """log softmax over the last axis, stable: z − max − log Σ exp(z − max)."""
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def kd_forward(student_logits, teacher_logits, counted, temperature: float):
    """L_KD = T²·(1/N)·Σ_n KL(p_t,n ‖ p_s,n) on the counted positions; (loss, cache)."""
    T = float(temperature)
    N = int(counted.sum())
    log_ps = log_softmax(student_logits[counted] * (1.0 / T))               # [N, V]
    log_pt = log_softmax(teacher_logits[counted].astype(log_ps.dtype) * (1.0 / T))  # [N, V]
    p_t = np.exp(log_pt)
    kl = (p_t * (log_pt - log_ps)).sum(-1)                                  # [N]
    loss = T * T * float(kl.sum(dtype=np.float64)) / N
    return loss, (np.exp(log_ps), p_t, counted, N, T, student_logits.shape,
                  student_logits.dtype)


def kd_backward(cache):
    """∂L_KD/∂s = (T/N)(p_s − p_t) on counted rows, 0 elsewhere -> [B, T, V]."""
    p_s, p_t, counted, N, T, shape, dtype = cache
    ds = np.zeros(shape, dtype=dtype)
    ds[counted] = (p_s - p_t) * (T / N)
    return ds


def check_kd_options(temperature: float, alpha: float) -> None:
    """Raise ConfigError unless T > 0 is finite and α ∈ [0, 1]."""
    if not (isinstance(temperature, (int, float, np.number)) and np.isfinite(temperature)
            and temperature > 0):
        raise ConfigError(f"temperature must be a positive finite number, found "
                          f"{temperature!r}")
    if not (isinstance(alpha, (int, float, np.number)) and 0.0 <= alpha <= 1.0):
        raise ConfigError(f"alpha must lie in [0, 1], found {alpha!r}")


def distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0,
                      alpha: float = 0.5):
    """(L, ∂L/∂s, {"kd": L_KD, "ce": L_CE}) for L = α·L_KD + (1 − α)·L_CE."""
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"student logits {student_logits.shape} and teacher logits "
                          f"{teacher_logits.shape} differ: distillation needs the same "
                          "tokenizer and vocabulary")
    check_kd_options(temperature, alpha)
    _, counted = shift_labels(labels, student_logits.shape[-1])
    kd, kd_cache = kd_forward(student_logits, teacher_logits, counted, temperature)
    ce, ce_cache = cross_entropy_forward(student_logits, labels)
    ds = alpha * kd_backward(kd_cache) + (1.0 - alpha) * cross_entropy_backward(ce_cache)
    return alpha * kd + (1.0 - alpha) * ce, ds, {"kd": kd, "ce": ce}


def distill_options(steps: int, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
                    temperature: float = 2.0, alpha: float = 0.5, seq_len: int = 128, **optim):
    """The loop's options for distillation (as `finetune_options`), with T and α checked."""
    check_kd_options(temperature, alpha)
    return ft.finetune_options(steps, lr, batch_size, seed, seq_len=seq_len, **optim)


def distill(teacher, student, examples, steps: int, temperature: float = 2.0,
            alpha: float = 0.5, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
            progress: bool = True, **optim):
    """Train `student` (every weight, or its LoRA adapters) towards `teacher` on
    [(ids, labels)] examples; returns (new student, history of (L, L_KD, L_CE))."""
    if teacher.config.vocab_size != student.config.vocab_size:
        raise ConfigError(f"teacher vocab_size {teacher.config.vocab_size} != student "
                          f"vocab_size {student.config.vocab_size}: they must share a tokenizer")
    if not examples:
        raise InputError("distill: no examples")
    T_max = max(len(ids) for ids, _ in examples)
    options = distill_options(steps, lr, batch_size, seed, temperature, alpha, T_max, **optim)
    pad = pad_id_of(student.tokenizer) if student.tokenizer is not None else 0
    trainable = (lambda name: False) if lora.lora_weights(student) else None
    history = []

    def loss_fn(view, draw):
        ids, labels = sample_batch(examples, batch_size, seed, draw, pad)
        teacher_logits = forward(teacher, ids)                              # [B, T, V]
        parts = {}

        def dlogits_fn(logits):
            loss, ds, p = distillation_loss(logits, teacher_logits, labels, temperature, alpha)
            parts.update(p)
            return loss, ds

        loss, grads = loss_and_grads(view, ids, dlogits_fn=dlogits_fn, trainable=trainable)
        history.append((loss, parts["kd"], parts["ce"]))
        return loss, grads

    # besides the student's step: the teacher's forward, its logits and the KL's [N, V] terms
    B, V, itemsize = options.batch_size, teacher.config.vocab_size, np.dtype(teacher.dtype).itemsize
    teacher_bytes = forward_bytes(teacher.config, T_max, B, itemsize) + 4 * B * T_max * V * itemsize
    new, _ = ft.optimise(student, loss_fn, options, progress=progress, desc="distill",
                         extra_bytes=teacher_bytes)
    return new, history


def repetition_rate(tokens, n: int = 2) -> float:
    """Fraction of the n-grams of a token sequence that already occurred earlier in it.

    0 for text that never repeats itself, → 1 for a loop like "to to to to"
    (the slides' collapsed student). Short sequences without any n-gram give 0.
    """
    tokens = [int(t) for t in tokens]
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    seen, repeated = set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated / len(grams)
