"""Argument types shared by the subcommands, checked while the command line is parsed.

A bad value is refused by argparse before any model is loaded, as one
`minislm: error: ...` line (a negative seed used to surface as a NumPy traceback,
after seconds of calibration).
"""
from __future__ import annotations

import argparse


def seed(text: str) -> int:
    """A random seed: an integer ≥ 0 (what numpy.random.default_rng accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, found "
                                         f"{text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer seed, found {value}")
    return value


def text(value: str) -> str:
    """Text given on the command line, refused when it is not valid UTF-8.

    Python decodes the bytes of argv that are not UTF-8 into lone surrogates
    (U+DC80–U+DCFF, PEP 383); they cannot be tokenized, printed or saved, so such
    text is refused with the offending byte rather than guessed at.
    """
    bad = next((i for i, ch in enumerate(value) if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        byte = ord(value[bad]) - 0xDC00 if ord(value[bad]) >= 0xDC80 else None
        found = f"byte 0x{byte:02x}" if byte is not None else f"U+{ord(value[bad]):04X}"
        raise argparse.ArgumentTypeError(
            f"text must be valid UTF-8, found {found} at character {bad} (check the "
            "terminal's encoding, e.g. LANG=C.UTF-8)")
    return value
