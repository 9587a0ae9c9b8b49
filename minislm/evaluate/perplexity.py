"""Perplexity with the fixed-length protocol.

    PPL = exp( (1/N) Σ_i −log p(w_i | w_<i) )                 (LLaMA thesis eq. 3.12)

A text longer than the model's context is tokenized once and cut into windows
of T tokens that start every S tokens (the stride). Inside a window every
token is predicted from the tokens before it *in that window*; a token is
scored only once, in the first window that contains it with context:

    window k covers ids[b : e],  b = k·S,  e = min(b + T, N)
    scored targets  i ∈ [max(b + 1, e_prev), e)           e_prev = end of window k−1

With S = T (the default) the windows do not overlap and the first token of
every window has no context and is not scored (the Hugging Face recipe with
stride = max length; the LLaMA thesis' "sequences of 512"). With S < T each
window re-reads T − S tokens of context and scores only its S new tokens.
The NLL is accumulated over all scored tokens before the exponential, so
a short last window weighs as much per token as a full one.

WikiText-2 raw test (``shared/data/wikitext-2-raw/wiki.test.txt``) is the
thesis' benchmark; the default text here is the test split of the project's
own corpus (``minislm.data.corpus``), which every machine can rebuild.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, InputError
from ..model.forward import forward
from ..tokenizer import encode

LOGITS_BUDGET = 32 * 1024 * 1024      # floats of logits per batch (128 MB): sets the batch size


@dataclass(frozen=True)
class Perplexity:
    """The result of `perplexity`: PPL = exp(nll / N) over N scored tokens, and the windows."""
    perplexity: float      # exp(nll / tokens)
    nll: float             # Σ −log p over the scored tokens (nats)
    tokens: int            # N: scored tokens
    windows: int
    seqlen: int            # T
    stride: int            # S

    def as_dict(self) -> dict:
        """The fields as a plain dict (for JSON logs and reports)."""
        return asdict(self)


def windows(n_ids: int, seqlen: int, stride: int) -> list[tuple[int, int, int]]:
    """[(b, e, first scored target)] of the windows over n_ids tokens."""
    if seqlen < 2:
        raise ConfigError(f"seqlen must be at least 2 tokens (one context, one target), "
                          f"found {seqlen}")
    if not 1 <= stride <= seqlen:
        raise ConfigError(f"stride must lie in [1, seqlen={seqlen}], found {stride}")
    out, e_prev = [], 0
    for b in range(0, max(n_ids - 1, 0), stride):
        e = min(b + seqlen, n_ids)
        first = max(b + 1, e_prev)
        if first < e:
            out.append((b, e, first))
        e_prev = e
        if e == n_ids:
            break
    return out


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−log softmax(z)[y] per position: logits [B, T, V], targets [B, T] -> [B, T] float32."""
    z_max = logits.max(axis=-1, keepdims=True)                                   # [B, T, 1]
    log_z = np.log(np.exp(logits - z_max).sum(axis=-1)) + z_max[..., 0]           # [B, T]
    z_y = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]         # [B, T]
    return (log_z - z_y).astype(np.float32)


def perplexity_of_ids(model, ids, seqlen: int | None = None, stride: int | None = None,
                      batch_size: int | None = None, progress: bool = True) -> Perplexity:
    """Perplexity of one token sequence ids [N] under the fixed-length protocol."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    T = int(min(512, model.config.max_position) if seqlen is None else seqlen)
    S = int(T if stride is None else stride)
    if T > model.config.max_position:
        raise ConfigError(f"seqlen {T} exceeds the model's max_position "
                          f"({model.config.max_position})")
    spans = windows(len(ids), T, S)
    if not spans:
        raise InputError(f"the text has {len(ids)} tokens; perplexity needs at least 2")
    B = batch_size or max(1, LOGITS_BUDGET // (T * model.config.vocab_size))
    nll, n = 0.0, 0
    bar = tqdm(total=len(spans), desc="perplexity", unit="win", disable=not progress,
               leave=False)
    i = 0
    while i < len(spans):
        length = spans[i][1] - spans[i][0]                  # batch windows of equal length
        group = [spans[i]]
        while len(group) < B and i + len(group) < len(spans) and \
                spans[i + len(group)][1] - spans[i + len(group)][0] == length:
            group.append(spans[i + len(group)])
        x = np.stack([ids[b:e] for b, e, _ in group])                           # [B, T]
        logits = forward(model, x[:, :-1], check_numerics=True)                  # [B, T-1, V]
        losses = token_nll(logits, x[:, 1:])                                     # [B, T-1]
        for row, (b, e, first) in enumerate(group):
            scored = losses[row, first - b - 1:]             # targets first … e−1
            nll += float(scored.sum(dtype=np.float64))
            n += scored.size
        i += len(group)
        bar.update(len(group))
    bar.close()
    return Perplexity(perplexity=math.exp(nll / n), nll=nll, tokens=n, windows=len(spans),
                      seqlen=T, stride=S)


def perplexity(model, text: str, seqlen: int | None = None, stride: int | None = None,
               limit: int | None = None, batch_size: int | None = None,
               progress: bool = True) -> Perplexity:
    """Perplexity of a text: tokenized with the model's tokenizer, the first `limit` tokens kept."""
    if not text or not text.strip():
        raise InputError("perplexity: the text is empty")
    ids = encode(model.tokenizer, text)
    if limit is not None:
        if limit < 2:
            raise ConfigError(f"limit must be at least 2 tokens, found {limit}")
        ids = ids[:limit]
    return perplexity_of_ids(model, ids, seqlen, stride, batch_size, progress)


def default_text(split: str = "test") -> str:
    """The project's own evaluation text: one split of the stdlib-docstring corpus."""
    from ..data.corpus import corpus_text
    return corpus_text(split)
