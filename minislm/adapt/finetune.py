"""Supervised fine-tuning: full, or LoRA adapters only, on prompt/response examples.

The objective of the voice-assistant thesis (§5.3.2): maximise the likelihood
of the answer given the prompt, on the answer's tokens only,

    L = −(1/N) Σ_{(x, y)} Σ_{t=1}^{|y|} log P_Φ(y_t | x, y_<t)       N = Σ |y|

(labels −100 on the prompt, see `minislm.train.loss`). Each example is
tokenised as prompt + response + end-of-text, so the model also learns to stop.

    full fine-tuning    Φ = every array of `model.params`
    LoRA                Φ = Φ₀ + ΔΦ(Θ), Θ = the adapters' A and B; Φ₀ frozen
                        (plus, optionally, whole dense weights: after adding tool
                        tokens their new embedding / LM-head rows must be learnt)

Batches: `batch_size` examples drawn from `default_rng([seed, step])` (a rerun
draws the same batches), right-padded to the longest — with causal attention a
pad after the last real token changes nothing before it, and its label is −100.
The update is AdamW with warm-up + cosine decay and global-norm clipping from
`minislm.train.optim`; the input model is never modified.

Data (`load_examples`): "toolcall" (the generator's train split, loss on the
tool call), "requirements" (each sentence whole), or a file — JSONL rows with
"prompt"/"response" (or "text"), or plain text cut into windows of `max_len`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, InputError, TokenizerError
from ..train.backward import loss_and_grads
from ..train.loss import IGNORE_INDEX
from ..train.optim import AdamWState, adamw_step, clip_by_global_norm, learning_rate
from . import lora

PAD_TOKENS = ("<|pad|>", "<pad>")
EOS_TOKENS = ("<|endoftext|>", "</s>", "<|end_of_text|>")


def _first_id(tokenizer, candidates):
    for token in candidates:
        i = tokenizer.token_to_id(token)
        if i is not None:
            return int(i)
    return None


# ------------------------------------------------------------------ data
def encode_example(tokenizer, prompt: str, response: str, max_len: int, eos_id=None):
    """(ids [T], labels [T]) for prompt + response (+ eos); labels −100 on the prompt."""
    p = tokenizer.encode(prompt).ids if prompt else []
    r = tokenizer.encode(response).ids + ([eos_id] if eos_id is not None else [])
    ids = np.array(p + r, dtype=np.int64)[:max_len]
    labels = ids.copy()
    labels[:len(p)] = IGNORE_INDEX
    return ids, labels


def text_windows(tokenizer, text: str, max_len: int):
    """Consecutive windows of `max_len` tokens of one long text, every token a target."""
    ids = np.array(tokenizer.encode(text).ids, dtype=np.int64)
    return [(ids[i:i + max_len], ids[i:i + max_len].copy())
            for i in range(0, max(len(ids) - 1, 1), max_len) if len(ids[i:i + max_len]) > 1]


def pairs_for(data: str, split: str = "train", seed: int = 0):
    """(prompt, response) pairs of a named task, or None for a file (read by `load_examples`)."""
    if data == "toolcall":
        from ..data.tasks import split_example, toolcall_dataset
        return [split_example(ex) for ex in toolcall_dataset(seed=seed)[split]]
    if data == "requirements":
        from ..data.requirements import requirements_dataset
        return [("", sentence) for sentence in requirements_dataset(seed=seed)[split]]
    return None


def load_examples(tokenizer, data: str, max_len: int, split: str = "train", seed: int = 0):
    """Training examples [(ids, labels)] from "toolcall", "requirements" or a file path."""
    if tokenizer is None:
        raise TokenizerError("fine-tuning on text needs the model's tokenizer.json")
    eos_id = _first_id(tokenizer, EOS_TOKENS)
    pairs = pairs_for(data, split, seed)
    if pairs is None:
        path = Path(data)
        if not path.is_file():
            raise InputError(f"--data {data!r}: expected 'toolcall', 'requirements' or an "
                             "existing JSONL / text file")
        if path.suffix == ".jsonl":
            from ..evaluate.files import read_jsonl
            pairs = []
            for lineno, row in read_jsonl(path, "fine-tuning JSONL file"):
                if isinstance(row.get("text"), str):
                    pairs.append(("", row["text"]))
                elif isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
                    from ..data.tasks import render_prompt
                    pairs.append((render_prompt(row["prompt"]), " " + row["response"]))
                else:
                    raise InputError(f"{path}:{lineno}: expected string fields 'prompt' and "
                                     "'response', or 'text'")
        else:
            from ..data.corpus import load_text_corpus
            examples = text_windows(tokenizer, load_text_corpus(path), max_len)
            if not examples:
                raise InputError(f"{path}: too little text for one training window")
            return examples
    examples = [encode_example(tokenizer, p, r, max_len, eos_id) for p, r in pairs]
    examples = [(i, l) for i, l in examples if (l[1:] != IGNORE_INDEX).any()]
    if not examples:
        raise InputError(f"--data {data}: no example has a token to train on "
                         f"(max_len {max_len} too short?)")
    return examples


def make_batch(examples, indices, pad_id: int):
    """ids, labels [B, T_max]: the chosen examples right-padded (pad labels −100)."""
    T = max(len(examples[i][0]) for i in indices)
    ids = np.full((len(indices), T), pad_id, dtype=np.int64)
    labels = np.full((len(indices), T), IGNORE_INDEX, dtype=np.int64)
    for row, i in enumerate(indices):
        x, y = examples[i]
        ids[row, :len(x)] = x
        labels[row, :len(y)] = y
    return ids, labels


def check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, found {batch_size!r}")


def pad_id_of(tokenizer) -> int:
    i = _first_id(tokenizer, PAD_TOKENS)
    if i is None:
        i = _first_id(tokenizer, EOS_TOKENS)
    return 0 if i is None else i


# ------------------------------------------------------------------ the loop
def trainable_tensors(model, also_train=()) -> dict:
    """Working copies of what training updates: the LoRA A/B (plus the dense
    weights named in `also_train`) if the model has adapters, everything else
    frozen; otherwise every array (full fine-tuning)."""
    if lora.lora_weights(model):
        dense = {name: model.params[name].copy() for name in also_train}
        return {**{k: v.copy() for k, v in lora.trainable(model).items()}, **dense}
    return {k: v.copy() for k, v in model.params.items() if isinstance(v, np.ndarray)}


def with_tensors(model, tensors: dict, dropout_seed=None):
    """The model with `tensors` (from `trainable_tensors`) put in place."""
    dense = {k: v for k, v in tensors.items() if k in model.params}
    model = model.replace(params={**model.params, **dense})
    if lora.lora_weights(model):
        return lora.with_trainable(model, tensors, dropout_seed)
    return model


def flat_grads(grads: dict) -> dict:
    """LoRA weights report {"lora_A", "lora_B"} under their weight name: flatten to
    the keys of `lora.trainable`."""
    out = {}
    for name, g in grads.items():
        if isinstance(g, dict):
            for part, value in g.items():
                out[f"{name}.{part}"] = value
        else:
            out[name] = g
    return out


def optimise(model, loss_fn, steps: int, lr: float, seed: int = 0, warmup: int | None = None,
             weight_decay: float = 0.0, clip: float | None = 1.0, progress: bool = True,
             desc: str = "finetune", also_train=()):
    """Train `model` with AdamW for `steps` steps; returns (new model, losses per step).

    loss_fn(model_view, step) -> (loss, grads) computes the loss of one batch on
    the current weights (`minislm.train.backward.loss_and_grads` underneath).
    """
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, found {steps!r}")
    if not lr > 0:
        raise ConfigError(f"learning rate must be positive, found {lr!r}")
    stuck = [name for name, w in model.params.items() if not isinstance(w, np.ndarray)
             and not hasattr(w, "linear_backward")]
    if stuck:
        raise ConfigError(f"{len(stuck)} weights (e.g. '{stuck[0]}') are compressed tensors "
                          "without a backward (linear_backward), so no gradient can pass "
                          "through them; dequantize them or wrap them in LoRA")
    tensors = trainable_tensors(model, also_train)
    state = AdamWState()
    warmup = max(1, steps // 10) if warmup is None else warmup
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        view = with_tensors(model, tensors, dropout_seed=seed * 1_000_003 + step)
        loss, grads = loss_fn(view, step)
        grads = {k: g for k, g in flat_grads(grads).items() if k in tensors}
        grads, _ = clip_by_global_norm(grads, clip)
        eta = learning_rate(step, steps, lr, warmup=warmup, minimum=0.1 * lr)
        adamw_step(tensors, grads, state, eta, betas=(0.9, 0.999), weight_decay=weight_decay)
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}")
    return with_tensors(model, tensors, dropout_seed=None), losses


def finetune(model, examples, steps: int, lr: float | None = None, batch_size: int = 16,
             seed: int = 0, progress: bool = True, also_train=(), **optim):
    """Fine-tune on [(ids, labels)] examples: full, or adapters only if the model has LoRA
    weights (use `lora.add_lora` first) plus the dense weights named in `also_train`
    (e.g. the resized embedding and LM head). Returns (new model, losses)."""
    if not examples:
        raise InputError("finetune: no examples")
    check_batch_size(batch_size)
    frozen = lora.lora_weights(model) != {}
    lr = (1e-3 if frozen else 3e-4) if lr is None else lr
    pad = pad_id_of(model.tokenizer) if model.tokenizer is not None else 0
    also_train = tuple(also_train)
    trainable = (lambda name: name in also_train) if frozen else None

    def loss_fn(view, step):
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
        ids, labels = make_batch(examples, idx, pad)
        return loss_and_grads(view, ids, labels, trainable=trainable)

    return optimise(model, loss_fn, steps, lr, seed=seed, progress=progress,
                    also_train=also_train if frozen else (), **optim)
