"""Token streams and batches for next-token training.

Documents are tokenized and concatenated, each followed by the end-of-text
token (GPT-2's packing): one long stream of ids. A training batch is B windows
of T consecutive tokens at random offsets, with `labels = input_ids` (the loss
shifts them, see `loss.py`). The offsets of step s come from
`np.random.default_rng([seed, s])`, so a resumed run draws exactly the batches
the uninterrupted run would have drawn.

Validation uses the non-overlapping windows 0…T−1, T…2T−1, … of its stream, in
order, so every run scores the same tokens.

The unigram baseline p(w) = (count(w) + 1) / (N + V) (add-one smoothing) is
fitted on the training stream: a language model that ignores context. A
trained model must beat its perplexity on the same validation targets.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError, TokenizerError
from ..tokenizer import EOS_TOKENS, first_token_id


def end_of_text_id(tokenizer) -> int | None:
    """The id of the end-of-text token (GPT-2's, LLaMA-2's or LLaMA-3's), or None."""
    return first_token_id(tokenizer, EOS_TOKENS)


def token_stream(tokenizer, documents, eos_id: int | None = None) -> np.ndarray:
    """All documents as one int32 stream, each followed by eos_id (the end-of-text token)."""
    if tokenizer is None:
        raise TokenizerError("training on text needs a tokenizer (the model folder has no "
                             "tokenizer.json; pass --tokenizer)")
    if isinstance(documents, str):
        documents = [documents]
    eos_id = end_of_text_id(tokenizer) if eos_id is None else eos_id
    pieces = []
    for encoding in tokenizer.encode_batch(list(documents)):
        pieces.append(np.asarray(encoding.ids, dtype=np.int32))
        if eos_id is not None:
            pieces.append(np.array([eos_id], dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    if stream.size == 0:
        raise InputError("the corpus encodes to zero tokens")
    return stream


def random_batch(stream: np.ndarray, batch_size: int, seq_len: int, seed: int, step: int):
    """ids [B, T] (int64): B windows at offsets drawn from default_rng([seed, step])."""
    if stream.size < seq_len + 1:
        raise InputError(f"the training stream has {stream.size} tokens, fewer than one "
                         f"window of --seq-len {seq_len}")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, stream.size - seq_len + 1, batch_size)
    return np.stack([stream[s:s + seq_len] for s in starts]).astype(np.int64)


def eval_windows(stream: np.ndarray, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """Non-overlapping windows [N, T] from the start of the stream (at most max_tokens tokens)."""
    n = stream.size // seq_len
    if max_tokens is not None:
        n = min(n, max(1, max_tokens // seq_len))
    if n == 0:
        raise InputError(f"the validation stream has {stream.size} tokens, fewer than one "
                         f"window of {seq_len}")
    return stream[:n * seq_len].reshape(n, seq_len).astype(np.int64)


def unigram_perplexity(train_stream: np.ndarray, windows: np.ndarray, V: int) -> float:
    """exp(mean −log p(w)) of an add-one unigram model on the targets the LM is scored on
    (every window token but the first, which no model predicts)."""
    counts = np.bincount(train_stream, minlength=V).astype(np.float64)
    logp = np.log((counts + 1.0) / (counts.sum() + V))
    targets = windows[:, 1:].reshape(-1)
    return math.exp(-float(logp[targets].mean()))
