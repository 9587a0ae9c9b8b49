"""Reading data files: UTF-8 text or JSON lines, optionally bz2-compressed.

One place that turns the ways a data file can be wrong — missing, binary,
not UTF-8, not valid JSON on some line — into an InputError naming the file
and line, so every loader (the evaluation sets in evaluate/, the fine-tuning
examples in `data.examples`) refuses bad input the same way.
"""
from __future__ import annotations

import bz2
import json
from pathlib import Path

from ..errors import InputError


def read_lines(path, what: str = "data file") -> list[str]:
    """The lines of a UTF-8 text file (.bz2 decompressed), without line endings."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what}")
    if not path.is_file():                  # a folder, FIFO or device would block or fail
        raise InputError(f"{path}: is not a regular file (expected a {what})")
    try:
        data = bz2.decompress(path.read_bytes()) if path.suffix == ".bz2" else path.read_bytes()
    except (OSError, EOFError, ValueError) as e:
        raise InputError(f"{path}: cannot be read as a {what} ({e})") from None
    if b"\x00" in data[:65536]:
        raise InputError(f"{path} looks like a binary file (it contains NUL bytes); "
                         f"expected a UTF-8 {what}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset "
                         f"{e.start} cannot be decoded") from None
    return text.splitlines()


def read_jsonl(path, what: str = "JSONL file"):
    """(line number, object) for every non-empty line of a JSON-lines file."""
    for lineno, line in enumerate(read_lines(path, what), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:      # 5000-digit integers, deep nesting
            raise InputError(f"{path}:{lineno}: JSON beyond what is accepted "
                             f"({type(e).__name__}: {str(e)[:80]})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, found "
                             f"{type(row).__name__}")
        yield lineno, row
