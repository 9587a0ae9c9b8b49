"""Tokenizers: the checkpoint's `tokenizer.json` through the `tokenizers` library.

GPT-2 folders from the Hub may carry only `vocab.json` + `merges.txt`; those
are assembled into the same byte-level BPE.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError, TokenizerError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "generation_config.json")
EOS_TOKENS = ("<|endoftext|>", "</s>", "<|end_of_text|>")    # GPT-2's, LLaMA-2's, LLaMA-3's
PAD_TOKENS = ("<|pad|>", "<pad>")


def load_tokenizer(folder, vocab_size: int | None = None):
    """The folder's tokenizer, or None if it has no tokenizer files."""
    from tokenizers import Tokenizer
    folder = Path(folder)
    path = folder / "tokenizer.json"
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        if (folder / name).exists() and not (folder / name).is_file():   # FIFOs would block
            raise TokenizerError(f"{folder / name}: not a regular file")
    # Files are read here and handed over as text: the library only takes UTF-8 paths, and
    # a folder name need not be UTF-8 (Linux paths are bytes).
    try:
        if path.exists():
            tok = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            from tokenizers import decoders, models, pre_tokenizers
            path = folder / "vocab.json"
            vocab = json.loads(path.read_text(encoding="utf-8"))
            tok = Tokenizer(models.BPE(vocab, _merges(folder / "merges.txt")))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        else:
            return None
    except BaseException as e:  # the tokenizers library raises plain Exceptions (and Rust panics)
        if not _library_error(e):
            raise
        raise TokenizerError(f"{path}: cannot be parsed as a Hugging Face tokenizer ({e})") \
            from None
    if vocab_size is not None and tok.get_vocab_size() > vocab_size:
        raise TokenizerError(f"{path}: tokenizer has {tok.get_vocab_size()} tokens but the "
                             f"model's vocab_size is {vocab_size} (expected at most that many)")
    return tok


def _merges(path: Path) -> list[tuple[str, str]]:
    """GPT-2's merges.txt: an optional '#version' line, then one 'left right' pair a line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    pairs = [tuple(line.split(" ")) for line in lines if line]
    bad = next((i for i, pair in enumerate(pairs) if len(pair) != 2), None)
    if bad is not None:
        raise TokenizerError(f"{path}: expected 'left right' merge pairs, found "
                             f"{' '.join(pairs[bad])!r}")
    return pairs


def _library_error(e: BaseException) -> bool:
    """An error of the input file: any Exception, or a Rust panic surfacing as pyo3's
    PanicException (a BaseException) — but never Ctrl-C or SystemExit."""
    return isinstance(e, Exception) or type(e).__name__ == "PanicException"


def encode(tokenizer, text: str) -> list[int]:
    """The token ids of `text`; clear errors for a missing tokenizer or text that is not Unicode."""
    if tokenizer is None:
        raise TokenizerError("this model folder has no tokenizer.json; pass token ids instead")
    if not isinstance(text, str):
        raise InputError(f"encode: expected text (str), found {type(text).__name__}")
    try:
        text.encode("utf-8")        # lone surrogates (undecodable bytes, PEP 383) are not text
    except UnicodeEncodeError as e:
        raise InputError(f"encode: text is not valid Unicode: {e.object[e.start]!r} at "
                         f"character {e.start} is a lone surrogate (bytes that were not UTF-8?)"
                         ) from None
    return tokenizer.encode(text).ids


def decode(tokenizer, ids) -> str:
    """Text of token ids (ids the tokenizer does not know are skipped, as transformers does)."""
    if tokenizer is None:
        raise TokenizerError("this model folder has no tokenizer.json")
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"decode: expected a sequence of integer token ids, found "
                         f"{ids!r:.80}") from None
    bad = [i for i in ids if not 0 <= i < 2 ** 32]
    if bad:
        raise InputError(f"decode: token ids must be non-negative, found {bad[:5]}")
    return tokenizer.decode(ids)


def first_token_id(tokenizer, candidates) -> int | None:
    """The id of the first of `candidates` that is a single token of `tokenizer`, else None."""
    for token in candidates:
        i = tokenizer.token_to_id(token)
        if i is not None:
            return int(i)
    return None
