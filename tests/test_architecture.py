"""The import rules of ARCHITECTURE.md, checked from the source.

Every module under minislm/ is parsed with `ast` (nothing is imported), its relative
imports resolved, and each import of another part of the package checked against
ALLOWED below, which is the rule book in one table:

    errors                         imports nothing of the package
    core: config, model/           imports no technique, nothing above it
    files: checkpoint, tokenizer, gguf/, loading, resources, threads, outputs
    train/, data/, calibration     the shared floor the techniques stand on
    techniques: prune/, quant/, adapt/   import the floors below, never each other
    leaves: evaluate/, hardware/   imported only by pipeline/, sweep and commands/
    top: pipeline/, sweep, commands/, cli, the package's public API (__init__)

Third-party imports are limited to the runtime dependencies (and two optional ones
imported inside functions), so `torch`, `transformers` and `lessons` never appear.
"""
import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "minislm"

# part -> the parts it may import (besides itself). A part is a top-level module or a
# sub-package of minislm; "minislm" is the package's own __init__ (the public API).
CORE = {"errors", "config", "model"}
FILES = CORE | {"checkpoint", "tokenizer", "gguf", "loading", "resources", "threads", "outputs"}
FLOOR = FILES | {"train", "data", "calibration"}
TECHNIQUES = {"prune", "quant", "adapt"}
LEAVES = {"evaluate", "hardware"}
ALLOWED = {
    "errors": set(),
    "config": {"errors"},
    "model": {"errors", "config"},                       # the core imports no technique
    # files in and out; loading builds a Model, gguf/ converts to the core's names
    **{part: FILES for part in ("checkpoint", "tokenizer", "gguf", "loading", "resources",
                                "threads", "outputs")},
    "train": FILES,                                      # loss, backward, optimiser, the one loop
    "data": FILES | {"train"},                           # data.examples labels with train.loss's -100
    "calibration": FILES | {"data"},                     # streamed statistics over the core's block
    # techniques: the floors below, never one another
    **{part: FLOOR for part in TECHNIQUES},
    # leaves: measure a model or a folder; nothing but the top imports them
    "evaluate": FILES | {"data"},
    "hardware": FILES,
    # the top
    "pipeline": FLOOR | TECHNIQUES | LEAVES,
    "sweep": FLOOR | LEAVES | {"pipeline"},
    "minislm": FILES | {"train"},                        # load, forward, generate, value_and_grad
    "commands": FLOOR | TECHNIQUES | LEAVES | {"pipeline", "sweep", "minislm"},
    "cli": {"errors", "commands"},
    "__main__": {"cli"},
}

# Deliberate breaks of the rules, each with its reason: (importing module, imported part).
EXCEPTIONS = {}

# Third-party names the package may import: its runtime dependencies, and the optional
# extras imported inside a function with an ImportError fallback.
RUNTIME = {"numpy", "tokenizers", "safetensors", "huggingface_hub", "tqdm"}
OPTIONAL = {"matplotlib", "threadpoolctl"}
NEVER = {"torch", "transformers", "peft", "gguf", "bitsandbytes", "lessons", "tests", "bench"}

# Only the CLI finds modules by name (its commands); everywhere else a reader can follow
# every call by its import.
DYNAMIC_IMPORTS_ALLOWED = {"minislm.cli"}


def module_name(path: Path, root: Path) -> str:
    """minislm/prune/depth.py -> "minislm.prune.depth"; a package's __init__ -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """(absolute imported name, line, inside a function) for every import in `source`.

    `from . import x` yields "pkg.x" (x may be a module or a name; `part_of` only
    needs the part it lands in)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                if child.module is None:          # from . import a, b
                    out.extend((f"{target}.{a.name}", child.lineno, in_function)
                               for a in child.names)
                else:
                    out.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(ast.parse(source), False)
    return out


def part_of(name: str) -> str | None:
    """The package part a minislm name belongs to ("minislm.quant.rtn" -> "quant",
    "minislm.load" -> "minislm", the package's API); None outside the package."""
    parts = name.split(".")
    if parts[0] != "minislm":
        return None
    if len(parts) == 1:
        return "minislm"
    top = parts[1]
    is_part = (PACKAGE / top).is_dir() or (PACKAGE / f"{top}.py").is_file()
    return top if is_part else "minislm"


def dynamic_imports(source: str) -> list[int]:
    """Lines calling importlib.import_module or __import__."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "__import__") or \
                    (isinstance(f, ast.Attribute) and f.attr == "import_module"):
                lines.append(node.lineno)
    return lines


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every broken rule in {module name: (source, is package)}, one line each."""
    errors = []
    stdlib = set(sys.stdlib_module_names)
    for module, (source, is_package) in sorted(sources.items()):
        src_part = part_of(module)
        for name, line, in_function in imports_of(source, module, is_package):
            where = f"{module}:{line} imports {name}"
            top = name.split(".")[0]
            if top in NEVER:
                errors.append(f"{where}: the package never imports {top}")
            elif top == "minislm":
                dst = part_of(name)
                if dst != src_part and dst not in ALLOWED[src_part] \
                        and (module, dst) not in EXCEPTIONS:
                    errors.append(f"{where}: {src_part} may not import {dst}")
            elif top in OPTIONAL:
                if not in_function:
                    errors.append(f"{where}: optional {top} only inside a function")
            elif top not in RUNTIME and top not in stdlib:
                errors.append(f"{where}: {top} is not a runtime dependency")
        if module not in DYNAMIC_IMPORTS_ALLOWED:
            errors.extend(f"{module}:{line} imports by name (a reader cannot follow it)"
                          for line in dynamic_imports(source))
    return errors


def package_sources() -> dict[str, tuple[str, bool]]:
    """{module name: (source, is package)} of every .py under minislm/."""
    return {module_name(p, PACKAGE): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_part_has_rules():
    parts = {part_of(m) for m in package_sources()}
    assert parts == set(ALLOWED), (parts - set(ALLOWED), set(ALLOWED) - parts)


def test_imports_follow_the_rules():
    sources = package_sources()
    assert len(sources) > 90                       # the walk found the package
    assert violations(sources) == []


def test_exceptions_are_still_needed():
    """A named exception the code no longer needs is removed from the table."""
    sources = package_sources()
    used = {(m, part_of(name)) for m, (src, pkg) in sources.items()
            for name, _, _ in imports_of(src, m, pkg)}
    assert set(EXCEPTIONS) <= used


@pytest.mark.parametrize("module, source, expected", [
    ("minislm.model.block", "from ..quant import rtn\n", "model may not import quant"),
    ("minislm.model.block", "from ..quant.rtn import quantize_rtn\n", "model may not import quant"),
    ("minislm.model", "from ..prune import depth\n", "model may not import prune"),
    ("minislm.loading", "from .adapt.lora import LoraLinear\n", "loading may not import adapt"),
    ("minislm.quant.gptq", "from ..prune.masks import check_sparsity\n",
     "quant may not import prune"),
    ("minislm.prune.wanda", "from .. import load\n", "prune may not import minislm"),
    ("minislm.evaluate.qa", "from ..pipeline import run\n", "evaluate may not import pipeline"),
    ("minislm.hardware.cost", "from ..quant import rtn\n", "hardware may not import quant"),
    ("minislm.model.layers", "import torch\n", "never imports torch"),
    ("minislm.commands.eval", "def f():\n    from transformers import AutoModel\n",
     "never imports transformers"),
    ("minislm.data.corpus", "from lessons import common\n", "never imports lessons"),
    ("minislm.evaluate.report", "import matplotlib\n", "optional matplotlib only inside"),
    ("minislm.tokenizer", "import sentencepiece\n", "not a runtime dependency"),
    ("minislm.pipeline.stages", "import importlib\nm = importlib.import_module('minislm.quant')\n",
     "imports by name"),
])
def test_the_check_catches(module, source, expected):
    """The checker flags each kind of break (so a clean run above means something)."""
    is_package = module in ("minislm", "minislm.model")
    found = violations({module: (source, is_package)})
    assert len(found) == 1 and expected in found[0], found


def test_relative_imports_resolve():
    assert imports_of("from ..quant.rtn import f\n", "minislm.model.block", False) == \
        [("minislm.quant.rtn", 1, False)]
    assert imports_of("from .block import f\n", "minislm.model", True) == \
        [("minislm.model.block", 1, False)]
    assert imports_of("def g():\n    from . import load\n", "minislm.evaluate.facts", False) == \
        [("minislm.evaluate.load", 2, True)]
    assert part_of("minislm.load") == "minislm" and part_of("minislm.quant.rtn") == "quant"


def test_readme_layout_lists_every_module():
    """README's Layout names every module of the package (a folder's __init__ by its folder)."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    words = set(re.findall(r"[\w.]+", layout))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if path.name == "__init__.py" and len(rel.parts) > 1:
            found = f"{rel.parts[-2]}/" in layout
        else:
            found = path.name in words or path.stem in words
        if not found:
            missing.append(str(rel))
    assert missing == []
