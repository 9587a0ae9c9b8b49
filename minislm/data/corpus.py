"""The default corpus: text that ships with every CPython, plus user text files.

No data set can be downloaded on a fresh machine or an offline laptop, yet
every Python installation carries a few megabytes of careful English prose
about programming: the interactive help texts of ``pydoc_data.topics`` and the
docstrings of the standard library. That is the default corpus on which the
tokenizer and the tiny models in ``weights/`` are trained.

How it is built (all deterministic, nothing cached on disk):

1. **Help topics.** Every entry of ``pydoc_data.topics.topics`` (the texts
   behind ``help("if")``, ``help("FORMATTING")``, ...), in sorted topic order.
   Each topic is one document with source key ``pydoc_data.topics:<topic>``.
2. **Docstrings.** Every ``.py`` file of the standard-library directory
   (``sysconfig.get_paths()["stdlib"]``), in sorted path order, is parsed with
   :mod:`ast` -- never imported -- and the module, class and function
   docstrings are taken in source order (``ast.get_docstring``, which strips
   the indentation). Each docstring is one document whose source key is the
   dotted module name (``json.decoder``, ``email.mime.text``). Folders named
   ``test``, ``tests``, ``idle_test``, ``site-packages``, ``dist-packages``,
   ``__pycache__`` and ``config-*`` are skipped, as are ``test_*.py`` files
   and files that do not parse with the running interpreter.
3. **De-duplication.** Line endings are normalised to ``\\n``, surrounding
   whitespace stripped, and a document identical to an earlier one (in the
   order above) is dropped, so "Return self==value." appears once.
4. **Split by module.** :func:`document_split` hashes the source key with
   SHA-256 and sends ~90 % of modules (and help topics) to ``train``, ~5 % to
   ``validation`` and ~5 % to ``test``. All docstrings of one module land in
   the same split, and de-duplication runs before splitting, so the splits
   never share a document and validation text is about modules the model has
   never read.

Size on CPython 3.11.7 (``corpus_stats()``; documents joined by ``"\\n\\n"``; sources =
modules or help topics; 79 help topics and 733 stdlib files were read):

==========  =========  =======  ==========  ================================================================
split       documents  sources  characters  sha256 of ``corpus_text(split)``
==========  =========  =======  ==========  ================================================================
train            7422      652     1965118  81f753d0cc2a3b996a1db37b6b493a512034af2f25846dccbda416a4b7294084
validation        454       37      187821  d0094aff27d725c6a41adfc4e2e1340c37df2f84d0abea341266de3601fbb345
test              456       31       91051  af522584bf823b08eabbad3b6971168cef401e7efd43747f35a8efc79fe35e0c
==========  =========  =======  ==========  ================================================================

The numbers vary a little with the Python version (new modules, edited
docstrings), so anything that depends on the exact text should record
``corpus_stats()`` next to its result (the shipped models in ``weights/``
should name the Python version and train hash they were trained on). In
total about 2.2 million characters; validation holds ~8 % and test ~4 % of
the characters (a few big modules decide the share, the split is by module
count).

Bring your own text with :func:`load_text_corpus` (a UTF-8 file, or a folder
of ``.txt`` files such as WikiText-2) and cut it with :func:`split_text`.
"""

import ast
import functools
import hashlib
import stat
import sys
import sysconfig
from pathlib import Path

from minislm.errors import InputError

SPLITS = ("train", "validation", "test")
DOCUMENT_SEPARATOR = "\n\n"
SKIPPED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


def document_split(source: str) -> str:
    """Return the split ("train", "validation" or "test") of a source key.

    The key is a module name (or ``pydoc_data.topics:<topic>``); its SHA-256
    digest, read as an integer modulo 100, puts buckets 0-89 in train, 90-94 in
    validation and 95-99 in test. Pure function of the name: a module keeps
    its split across Python versions and machines.
    """
    bucket = int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < 90:
        return "train"
    if bucket < 95:
        return "validation"
    return "test"


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _help_topics() -> list[tuple[str, str]]:
    """(source key, text) for every pydoc help topic, sorted by topic name."""
    try:
        from pydoc_data.topics import topics  # plain data: a dict of strings
    except ImportError:  # some distributions split pydoc_data into another package
        return []
    return [(f"pydoc_data.topics:{name}", topics[name]) for name in sorted(topics)]


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _docstrings_in_source_order(node: ast.AST):
    """Yield the docstrings of a module/class/function and its nested definitions, depth first."""
    definitions = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    if isinstance(node, definitions):
        docstring = ast.get_docstring(node, clean=True)
        if docstring:
            yield docstring
    for child in ast.iter_child_nodes(node):
        yield from _docstrings_in_source_order(child)


def stdlib_python_files(stdlib_dir: Path) -> list[Path]:
    """Sorted ``.py`` files of the standard library, without tests, site-packages or caches."""
    files = []
    for path in sorted(stdlib_dir.rglob("*.py")):
        relative = path.relative_to(stdlib_dir)
        folders = relative.parts[:-1]
        if any(folder in SKIPPED_FOLDERS or folder.startswith("config-") for folder in folders):
            continue
        if relative.name.startswith("test_"):
            continue
        files.append(path)
    return files


def _stdlib_docstrings(stdlib_dir: Path) -> list[tuple[str, str]]:
    """(module name, docstring) for every docstring of the stdlib, files in sorted order."""
    documents = []
    for path in stdlib_python_files(stdlib_dir):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):  # e.g. Python 2 fixtures of lib2to3: not this Python
            continue
        module = _module_name(path.relative_to(stdlib_dir))
        documents.extend((module, docstring) for docstring in _docstrings_in_source_order(tree))
    return documents


@functools.lru_cache(maxsize=4)
def _documents(stdlib_dir: str) -> tuple[tuple[str, str], ...]:
    seen = set()
    documents = []
    for source, text in _help_topics() + _stdlib_docstrings(Path(stdlib_dir)):
        text = _normalise(text)
        if text and text not in seen:
            seen.add(text)
            documents.append((source, text))
    return tuple(documents)


def _stdlib_dir(stdlib_dir) -> str:
    path = Path(stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"])
    if not path.is_dir():
        raise InputError(f"standard-library directory {path} does not exist; expected the folder holding os.py")
    return str(path.resolve())


def corpus_documents(stdlib_dir=None) -> list[tuple[str, str]]:
    """Every document of the default corpus as ``(source key, text)``, in corpus order.

    ``stdlib_dir`` defaults to the running interpreter's standard library. The
    result is computed once per process (a few seconds) and kept in memory only.
    """
    return list(_documents(_stdlib_dir(stdlib_dir)))


def default_corpus(stdlib_dir=None) -> dict[str, list[str]]:
    """The default corpus as ``{"train": [...], "validation": [...], "test": [...]}`` of documents."""
    splits = {name: [] for name in SPLITS}
    for source, text in corpus_documents(stdlib_dir):
        splits[document_split(source)].append(text)
    return splits


def corpus_text(split: str = "train", separator: str = DOCUMENT_SEPARATOR, stdlib_dir=None) -> str:
    """One split of the default corpus as a single string, documents joined by ``separator``."""
    if split not in SPLITS:
        raise InputError(f"unknown corpus split {split!r}; expected one of {', '.join(SPLITS)}")
    return separator.join(default_corpus(stdlib_dir)[split])


def corpus_stats(stdlib_dir=None) -> dict:
    """Size and SHA-256 of every split (of ``corpus_text(split)``), and the Python version that made them."""
    documents = corpus_documents(stdlib_dir)
    stats = {"python_version": sys.version.split()[0]}
    for split in SPLITS:
        chosen = [(source, text) for source, text in documents if document_split(source) == split]
        text = DOCUMENT_SEPARATOR.join(text for _, text in chosen)
        stats[split] = {
            "documents": len(chosen),
            "sources": len({source for source, _ in chosen}),
            "characters": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    return stats


# ---------------------------------------------------------------------------
# User corpora: any UTF-8 text file or folder of .txt files.


def _read_text_file(path: Path) -> str:
    """Decode one file as UTF-8 (a byte-order mark is dropped), refusing binary data."""
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise InputError(f"{path} looks like a binary file (it contains NUL bytes); expected UTF-8 plain text")
    try:
        text = data.decode("utf-8-sig")  # plain UTF-8, with or without a byte-order mark
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} cannot be decoded "
            f"({error.reason}); convert it first, e.g. `iconv -f latin1 -t utf-8 {path.name} > out.txt`"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text_corpus(path) -> str:
    """Read a plain-text corpus: one UTF-8 file, or every ``*.txt`` file below a folder.

    Files of a folder are read in sorted relative-path order and joined with a
    blank line; Windows line endings become ``\\n``. Raises ``InputError`` for
    a missing path, a folder without ``.txt`` files, binary or non-UTF-8 bytes
    (naming the file and byte offset), and text that is empty or only spaces.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise InputError(f"folder {path} holds no .txt files; expected a text file or a folder of .txt files")
    elif path.exists():                     # a FIFO or device: reading it could block forever
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(path.stat().st_mode) else "not a regular file"
        raise InputError(f"corpus path {path} is {kind}; expected a text file or a folder of .txt files")
    else:
        raise InputError(f"corpus path {path} does not exist; expected a text file or a folder of .txt files")
    texts = [_read_text_file(file) for file in files]
    text = DOCUMENT_SEPARATOR.join(t for t in texts if t.strip())
    if not text.strip():
        raise InputError(f"corpus {path} is empty (no text besides whitespace)")
    return text


def split_text(text: str, validation_fraction: float = 0.05, test_fraction: float = 0.05) -> dict[str, str]:
    """Cut one text into contiguous train / validation / test parts at line boundaries.

    For a user corpus that comes as a single file: the first ~90 % of the
    characters (by default) train, the next ~5 % validate, the last ~5 % test.
    Contiguous blocks, not shuffled lines, so no sentence is split between two
    parts and neighbouring lines do not leak across them.
    """
    if not (0.0 <= validation_fraction and 0.0 <= test_fraction and validation_fraction + test_fraction < 1.0):
        raise InputError(
            f"split fractions validation={validation_fraction}, test={test_fraction}: "
            "expected non-negative numbers summing to less than 1"
        )
    lines = text.splitlines(keepends=True)
    if len(lines) < 3:
        raise InputError(f"text of {len(lines)} line(s) cannot be split in three; expected at least 3 lines")
    boundaries, total, position = [], len(text), 0
    targets = [total * (1.0 - validation_fraction - test_fraction), total * (1.0 - test_fraction)]
    for index, line in enumerate(lines):
        while targets and position >= targets[0]:
            boundaries.append(index)
            targets.pop(0)
        position += len(line)
    boundaries += [len(lines)] * len(targets)
    first, second = boundaries
    return {
        "train": "".join(lines[:first]),
        "validation": "".join(lines[first:second]),
        "test": "".join(lines[second:]),
    }
