"""Special tool tokens: grow the vocabulary, the embedding and the LM head.

The voice-assistant thesis (§5.3.2) gives every tool-call delimiter its own
token and calls `model.resize_token_embeddings(len(tokenizer))`. A byte-level
BPE otherwise spells `<tool_call>` as five or six pieces the model must learn
to produce in order; one token is one decision.

For V old tokens and n new ones, with embedding E [V, C] and an untied head
W [V, C]:

    E' = [E; ē … ē]   [V + n, C]   ē = (1/V) Σ_v E_v     (the mean embedding)
    W' = [W; w̄ … w̄]   [V + n, C]   w̄ = (1/V) Σ_v W_v     (skipped when tied: W = E)

The mean runs over the rows of the tokenizer's tokens. An embedding padded to
a round size (more rows than tokens) gets its new ids on padding rows first;
those rows are overwritten with ē too, and the matrix grows only when the
tokens outrun the rows.

Starting from the mean (transformers' `mean_resizing`) keeps the new logits
w̄·h at the average of the old ones, so the resized model's distribution over
the old tokens is unchanged and the new tokens start out neither favoured nor
impossible; fine-tuning then moves them.

The new entries are *added tokens* of the `tokenizers.Tokenizer` — matched as
a whole before byte-level pre-tokenization — but not "special" in its sense:
special tokens are dropped by `decode` by default, and the evaluator must see
`<tool_call>` in the decoded answer to parse it.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError, TokenizerError
from ..model import families

TOOL_TOKENS = ("<tool_call>", "</tool_call>")


def add_tokens(model, tokens=TOOL_TOKENS):
    """A new model whose tokenizer has `tokens` as single ids and whose embedding
    (and untied LM head) has a mean-initialised row for each new id."""
    from tokenizers import AddedToken, Tokenizer
    if model.tokenizer is None:
        raise TokenizerError("add_tokens: the model has no tokenizer to extend")
    tokens = list(dict.fromkeys(tokens))
    if not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise InputError(f"add_tokens: expected non-empty strings, found {tokens!r}")
    tok = Tokenizer.from_str(model.tokenizer.to_str())       # a copy: the input stays as it was
    known = tok.get_vocab_size(with_added_tokens=True)       # ids 0 … known−1 are real tokens
    new = [t for t in tokens if tok.token_to_id(t) is None]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])
    new_ids = [tok.token_to_id(t) for t in new]
    cfg, P = model.config, dict(model.params)
    V = cfg.vocab_size
    V_new = max(V, tok.get_vocab_size(with_added_tokens=True))
    names = [families.embedding_name(cfg, model.prefix)]
    if not cfg.tied:
        names.append(families.lm_head_name(cfg, model.prefix))
    for name in names:
        E = P[name]                                                       # [V, C]
        if not isinstance(E, np.ndarray):
            raise InputError(f"add_tokens: '{name}' is a {type(E).__name__}, expected a dense "
                             "array (resize before quantizing)")
        # ē over the rows of real tokens: an embedding padded beyond the tokenizer (rows
        # known … V−1) keeps rows no token uses, and a new id may land on one of them
        mean = E[:min(known, V)].mean(axis=0, keepdims=True, dtype=np.float64).astype(E.dtype)
        E_new = np.concatenate([E, np.repeat(mean, V_new - V, axis=0)])  # [V', C]
        E_new[new_ids] = mean                                             # every new id: ē
        P[name] = E_new
    return model.replace(config=cfg.replace(vocab_size=V_new), params=P, tokenizer=tok)


def token_ids(model, tokens=TOOL_TOKENS) -> list[int]:
    """The ids of `tokens` in the model's tokenizer (each must be a single token)."""
    ids = []
    for t in tokens:
        i = model.tokenizer.token_to_id(t) if model.tokenizer is not None else None
        if i is None:
            raise TokenizerError(f"token {t!r} is not a single token of this tokenizer "
                                 "(add it with add_tokens)")
        ids.append(int(i))
    return ids
