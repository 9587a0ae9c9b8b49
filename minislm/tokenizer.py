"""Tokenizers: the checkpoint's `tokenizer.json` through the `tokenizers` library.

GPT-2 folders from the Hub may carry only `vocab.json` + `merges.txt`; those
are assembled into the same byte-level BPE.
"""
from __future__ import annotations

from pathlib import Path

from .errors import TokenizerError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "generation_config.json")


def load_tokenizer(folder, vocab_size: int | None = None):
    """The folder's tokenizer, or None if it has no tokenizer files."""
    from tokenizers import Tokenizer
    folder = Path(folder)
    path = folder / "tokenizer.json"
    try:
        if path.exists():
            tok = Tokenizer.from_file(str(path))
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            from tokenizers import decoders, models, pre_tokenizers
            path = folder / "vocab.json"
            tok = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"),
                                                 str(folder / "merges.txt")))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
        else:
            return None
    except Exception as e:  # the tokenizers library raises plain Exception subclasses
        raise TokenizerError(f"{path}: cannot be parsed as a Hugging Face tokenizer ({e})") \
            from None
    if vocab_size is not None and tok.get_vocab_size() > vocab_size:
        raise TokenizerError(f"{path}: tokenizer has {tok.get_vocab_size()} tokens but the "
                             f"model's vocab_size is {vocab_size} (expected at most that many)")
    return tok


def encode(tokenizer, text: str) -> list[int]:
    if tokenizer is None:
        raise TokenizerError("this model folder has no tokenizer.json; pass token ids instead")
    return tokenizer.encode(text).ids


def decode(tokenizer, ids) -> str:
    if tokenizer is None:
        raise TokenizerError("this model folder has no tokenizer.json")
    return tokenizer.decode([int(i) for i in ids])
