"""A `tokenizers.Tokenizer` from the vocabulary a GGUF file carries in its metadata.

A GGUF has no tokenizer.json; llama.cpp stores the pieces instead:

    tokenizer.ggml.model        "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE)
    tokenizer.ggml.pre          which pre-tokenizer split the merges were learned on
    tokenizer.ggml.tokens       the vocabulary, id = position
    tokenizer.ggml.merges       "left right" pairs, best first (byte-level BPE only)
    tokenizer.ggml.scores       one float per token (SentencePiece: higher merges first)
    tokenizer.ggml.token_type   1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, add_eos_token

Two builders, one per `tokenizer.ggml.model`, follow transformers' GGUF tokenizer
(`integrations/gguf/gguf_tokenizer_mapping.py`) so the ids are the same:

* byte-level BPE: the tokens spelled in GPT-2's byte alphabet, the file's merges, and the
  split `tokenizer.ggml.pre` names (PRE_TOKENIZERS below);
* SentencePiece ("llama"): spaces become "▁", unknown bytes fall back to <0xNN> tokens,
  and the merges — absent from the file — are rebuilt from the vocabulary: every way to cut
  a token into two tokens of the vocabulary, best token first. Gemma orders them by position
  in the file (its scores do not follow its merge order) and stores runs of spaces as real
  spaces; other SentencePiece vocabularies sort by score and prepend "▁" to the text.

Control tokens (type 3) become special added tokens and user-defined ones (type 4) plain
added tokens, so chat markers such as <|im_start|> or <start_of_turn> stay whole.
"""
from __future__ import annotations

from operator import itemgetter

import numpy as np

from ..errors import TokenizerError

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = range(1, 7)

_GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> (split regex, digits split one by one first, ignore_merges: a word that
# is a token as a whole is taken whole — LLaMA-3's tokenizer.json and llama.cpp do this)
PRE_TOKENIZERS = {
    "default": (_GPT2_SPLIT, False, False), "gpt-2": (_GPT2_SPLIT, False, False),
    "smollm": (_GPT2_SPLIT, True, False),   # SmolLM's tokenizer.json: Digits, then GPT-2's split
    "llama-bpe": (_LLAMA3_SPLIT, False, True), "llama3": (_LLAMA3_SPLIT, False, True),
    "llama-v3": (_LLAMA3_SPLIT, False, True), "smaug-bpe": (_LLAMA3_SPLIT, False, False),
}
GEMMA_ARCHITECTURES = ("gemma", "gemma2", "gemma3")


def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 bytes (`bytes_to_unicode`)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    spelling, extra = {}, 0
    for b in range(256):
        if b in printable:
            spelling[b] = chr(b)
        else:
            spelling[b] = chr(256 + extra)
            extra += 1
    return spelling


def _vocab_arrays(metadata: dict, where: str):
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError(f"{where}: tokenizer.ggml.tokens must be a non-empty list of "
                             "strings")
    types = metadata.get("tokenizer.ggml.token_type")
    types = np.ones(len(tokens), np.int64) if types is None else np.asarray(types)
    if len(types) != len(tokens):
        raise TokenizerError(f"{where}: tokenizer.ggml.token_type has {len(types)} entries, "
                             f"the vocabulary {len(tokens)}")
    return tokens, types


def _special(metadata: dict, tokens: list, key: str):
    """(token, id) of tokenizer.ggml.<key>_token_id, or None when absent or out of range."""
    token_id = metadata.get(f"tokenizer.ggml.{key}_token_id")
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return tokens[token_id], token_id
    return None


def build_tokenizer(metadata: dict, where: str = "GGUF file"):
    """The tokenizer a GGUF file's metadata describes (also for vocabulary-only files)."""
    kind = metadata.get("tokenizer.ggml.model")
    tokens, types = _vocab_arrays(metadata, where)
    if kind == "gpt2":
        tok = _byte_level(metadata, tokens, where)
        alphabet = set(byte_alphabet().values())
        spelled = lambda t: set(t) <= alphabet                     # noqa: E731
    elif kind == "llama":
        tok = _sentencepiece(metadata, tokens, where)
        spelled = lambda t: True                                   # noqa: E731
    else:
        raise TokenizerError(f"{where}: tokenizer.ggml.model {kind!r} is not supported "
                             "(expected 'gpt2' byte-level BPE or 'llama' SentencePiece)")
    _add_special_tokens(tok, tokens, types, spelled)
    _post_processor(tok, metadata, tokens, default_bos=kind == "llama")
    return tok


def _byte_level(metadata, tokens, where):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    pre = metadata.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise TokenizerError(f"{where}: pre-tokenizer tokenizer.ggml.pre = {pre!r} is not "
                             f"supported (known: {sorted(PRE_TOKENIZERS)})")
    merges = metadata.get("tokenizer.ggml.merges")
    if not isinstance(merges, list):
        raise TokenizerError(f"{where}: a byte-level BPE vocabulary needs tokenizer.ggml.merges")
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8")): i
             for i, t in enumerate(tokens)}
    pairs = []
    for m in merges:
        left, sep, right = m.partition(" ")
        if not sep:
            raise TokenizerError(f"{where}: merge {m!r} is not 'left right'")
        pairs.append((left, right))
    split, digits, whole_words = PRE_TOKENIZERS[pre]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=whole_words))
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    steps += [pre_tokenizers.Split(Regex(split), behavior="isolated"),
              pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


def sentencepiece_merges(tokens: list, priority) -> list[tuple[str, str]]:
    """Merges implied by a vocabulary: each way to cut a token into two vocabulary tokens,
    sorted by (priority of the token, length of the left piece, of the right) descending,
    as transformers' `generate_merges` orders them."""
    vocab = set(tokens)
    found = []
    for token, score in zip(tokens, priority):
        n = len(token)
        for k in range(n - 1, 0, -1):       # longer left piece first: the sort has less to do
            left = token[:k]
            if left in vocab:
                right = token[k:]
                if right in vocab:
                    found.append((score, k, n - k, left, right))
    found.sort(key=itemgetter(0, 1, 2), reverse=True)
    return [(left, right) for _, _, _, left, right in found]


def _sentencepiece(metadata, tokens, where):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    gemma = metadata.get("general.architecture") in GEMMA_ARCHITECTURES
    if gemma:   # runs of spaces are stored as spaces; the model spells them "▁"
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
        priority = [-i for i in range(len(tokens))]
    else:
        scores = metadata.get("tokenizer.ggml.scores")
        if scores is None or len(scores) != len(tokens):
            raise TokenizerError(f"{where}: a SentencePiece vocabulary needs one "
                                 "tokenizer.ggml.scores entry per token")
        priority = [float(s) for s in scores]
    unk = (_special(metadata, tokens, "unknown") or ("<unk>",))[0]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=sentencepiece_merges(tokens, priority),
                               fuse_unk=True, byte_fallback=True, unk_token=unk))
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if gemma:
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    else:
        prefix = metadata.get("tokenizer.ggml.add_space_prefix", True)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first" if prefix else "never", split=False)
        if prefix:
            decode.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(decode)
    return tok


def _add_special_tokens(tok, tokens, types, spelled) -> None:
    from tokenizers import AddedToken
    vocab = tok.get_vocab()
    control = [AddedToken(t, normalized=False, special=True)
               for t, k in zip(tokens, types) if k == CONTROL and spelled(t)]
    user = [AddedToken(t, normalized=False, special=False)
            for t, k in zip(tokens, types) if k == USER_DEFINED and t in vocab]
    if control:
        tok.add_special_tokens(control)
    if user:
        tok.add_tokens(user)


def _post_processor(tok, metadata, tokens, default_bos: bool) -> None:
    """BOS (and EOS) added by `encode` when the file asks for them, as llama.cpp does."""
    from tokenizers import processors
    bos = _special(metadata, tokens, "bos") if \
        metadata.get("tokenizer.ggml.add_bos_token", default_bos) else None
    eos = _special(metadata, tokens, "eos") if \
        metadata.get("tokenizer.ggml.add_eos_token", False) else None
    if bos is None and eos is None:
        return
    first = [f"{bos[0]}:0"] if bos else []
    last = [f"{eos[0]}:0"] if eos else []
    tok.post_processor = processors.TemplateProcessing(
        single=first + ["$A:0"] + last,
        pair=first + ["$A:0"] + last + [t[:-1] + "1" for t in first] + ["$B:1"] +
        [t[:-1] + "1" for t in last],
        special_tokens=[t for t in (bos, eos) if t is not None])
