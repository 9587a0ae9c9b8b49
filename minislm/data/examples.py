"""Prompt/response examples for fine-tuning and distillation, and their padded batches.

An example is a pair (ids [T], labels [T]) of int64 arrays: prompt + response
+ end-of-text, with labels −100 on the prompt, so the loss counts the answer's
tokens only (transformers' `labels` convention, see `minislm.train.loss`).
The end-of-text token is a target too, so the model also learns to stop.

Sources (`load_examples`):
    "toolcall"       the tool-call generator's split (`data.tasks`), loss on the call
    "requirements"   the requirement sentences (`data.requirements`), each one whole
    a .jsonl file    rows {"prompt", "response"} (the prompt rendered as in "toolcall")
                     or {"text"} (every token a target)
    any other file   plain text cut into consecutive windows of `max_len` tokens

A batch is B examples right-padded to the longest: with causal attention a pad
after the last real token changes nothing before it, and its label is −100.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, TokenizerError
from ..tokenizer import EOS_TOKENS, PAD_TOKENS, first_token_id
from ..train.loss import IGNORE_INDEX


def pad_id_of(tokenizer) -> int:
    """The id padding uses: the pad token, else end-of-text, else 0 (its label is −100 anyway)."""
    i = first_token_id(tokenizer, PAD_TOKENS)
    if i is None:
        i = first_token_id(tokenizer, EOS_TOKENS)
    return 0 if i is None else i


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
        from .tasks import split_example, toolcall_dataset
        return [split_example(ex) for ex in toolcall_dataset(seed=seed)[split]]
    if data == "requirements":
        from .requirements import requirements_dataset
        return [("", sentence) for sentence in requirements_dataset(seed=seed)[split]]
    return None


def _jsonl_pairs(path: Path) -> list:
    """(prompt, response) pairs of a fine-tuning JSONL file ({"prompt", "response"} or {"text"})."""
    from .files import read_jsonl
    from .tasks import render_prompt
    pairs = []
    for lineno, row in read_jsonl(path, "fine-tuning JSONL file"):
        if isinstance(row.get("text"), str):
            pairs.append(("", row["text"]))
        elif isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
            pairs.append((render_prompt(row["prompt"]), " " + row["response"]))
        else:
            raise InputError(f"{path}:{lineno}: expected string fields 'prompt' and "
                             "'response', or 'text'")
    return pairs


def load_examples(tokenizer, data: str, max_len: int, split: str = "train", seed: int = 0):
    """Training examples [(ids, labels)] from "toolcall", "requirements" or a file path."""
    if tokenizer is None:
        raise TokenizerError("fine-tuning on text needs the model's tokenizer.json")
    eos_id = first_token_id(tokenizer, EOS_TOKENS)
    pairs = pairs_for(data, split, seed)
    if pairs is None:
        path = Path(data)
        if not path.is_file():
            raise InputError(f"--data {data!r}: expected 'toolcall', 'requirements' or an "
                             "existing JSONL / text file")
        if path.suffix != ".jsonl":
            from .corpus import load_text_corpus
            examples = text_windows(tokenizer, load_text_corpus(path), max_len)
            if not examples:
                raise InputError(f"{path}: too little text for one training window")
            return examples
        pairs = _jsonl_pairs(path)
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


def sample_batch(examples, batch_size: int, seed: int, draw: int, pad_id: int):
    """ids, labels [B, T_max] of the batch number `draw`: min(B, N) distinct examples drawn
    from default_rng([seed, draw]), so a rerun (or a resumed run) draws the same batches."""
    rng = np.random.default_rng([seed, draw])
    idx = rng.choice(len(examples), size=min(batch_size, len(examples)), replace=False)
    return make_batch(examples, idx, pad_id)
