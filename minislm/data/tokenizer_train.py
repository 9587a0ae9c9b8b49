"""Train the byte-level BPE tokenizer of the shipped tiny models.

Byte-level BPE (GPT-2, Radford et al. 2019, section 2.2; Sennrich et al. 2016)
starts from the 256 byte values, so every UTF-8 string is encodable and there
is no unknown token, then repeatedly merges the most frequent adjacent pair of
symbols inside pre-tokenized words until the vocabulary has ``vocab_size``
entries:

    vocab = 256 bytes + special tokens + one new symbol per merge

The ``tokenizers`` library does the counting and merging; this module fixes
the choices so the result is reproducible and loadable everywhere:

- GPT-2's pre-tokenizer regex and byte-to-unicode mapping
  (``pre_tokenizers.ByteLevel(add_prefix_space=False)``), the ByteLevel
  decoder and post-processor, no normaliser -- text round-trips exactly;
- special tokens ``<|endoftext|>`` (id 0: end of document, also used as bos
  and unk like GPT-2) and ``<|pad|>`` (id 1, for padded batches, never a
  training target);
- deterministic: the same texts in the same order give the same
  ``tokenizer.json`` byte for byte (checked in ``tests/test_data.py``).

:func:`save_tokenizer` writes ``tokenizer.json`` plus ``tokenizer_config.json``
and ``special_tokens_map.json`` so that ``minislm``, ``tokenizers`` and
transformers' ``AutoTokenizer`` / ``PreTrainedTokenizerFast`` all load the
folder. The default tokenizer is trained on the train split of the default
corpus (:mod:`minislm.data.corpus`) -- never on validation or test text::

    python -m minislm.data.tokenizer_train --out weights/tokenizer --vocab-size 4096
"""

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from minislm.checkpoint import atomic_write_text
from minislm.data.corpus import default_corpus, load_text_corpus
from minislm.errors import ConfigError, InputError, MinislmError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)
DEFAULT_VOCAB_SIZE = 4096


def train_tokenizer(texts, vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2,
                    special_tokens=SPECIAL_TOKENS) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (a list of strings, e.g. documents).

    The special tokens get the first ids, in the order given; the 256 byte
    symbols follow, then the merges in the order they were learned.
    """
    texts = list(texts)
    if not any(text.strip() for text in texts):
        raise InputError("cannot train a tokenizer on empty text; expected at least one non-blank document")
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise ConfigError(f"vocab_size={vocab_size}: a byte-level BPE needs at least {minimum} "
                          f"(256 bytes + {len(special_tokens)} special tokens)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, folder, model_max_length: int = 1024) -> Path:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise InputError(f"tokenizer lacks the special tokens {missing}; train it with train_tokenizer()")
    special = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    atomic_write_text(folder / "tokenizer.json", tokenizer.to_str(pretty=True))
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(folder / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")
    return folder


def train_default_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2) -> Tokenizer:
    """The tokenizer of the shipped models: trained on the documents of the default corpus's train split."""
    return train_tokenizer(default_corpus()["train"], vocab_size=vocab_size, min_frequency=min_frequency)


def main(argv=None) -> int:
    """Command line: train the BPE tokenizer and save it with its configs into --out."""
    parser = argparse.ArgumentParser(description="Train the byte-level BPE tokenizer on the default corpus "
                                                 "(or on a text file / folder of .txt files).")
    parser.add_argument("--out", required=True, help="folder to write tokenizer.json and its configs into")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--corpus", default=None, help="text file or folder (default: the stdlib corpus)")
    parser.add_argument("--model-max-length", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        if args.corpus is None:
            tokenizer = train_default_tokenizer(args.vocab_size, args.min_frequency)
        else:
            tokenizer = train_tokenizer(load_text_corpus(args.corpus).split("\n\n"), args.vocab_size,
                                        args.min_frequency)
        save_tokenizer(tokenizer, args.out, args.model_max_length)
    except MinislmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}/tokenizer.json ({tokenizer.get_vocab_size()} tokens)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
