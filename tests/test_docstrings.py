"""Every public function and class of minislm/ says in its docstring what it is (issue 14).

Public: a module-level function or class whose name does not start with "_", and a
method, property or nested class of a public class with such a name. Checked from the
source with `ast` (nothing is imported)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "minislm"
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def undocumented(source: str, module: str) -> list[str]:
    """"module:line Qual.name" of every public definition without a docstring."""
    missing = []

    def visit(body, owner):
        for node in body:
            if isinstance(node, DEFS) and not node.name.startswith("_"):
                if not (ast.get_docstring(node) or "").strip():
                    missing.append(f"{module}:{node.lineno} {owner}{node.name}")
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{owner}{node.name}.")

    visit(ast.parse(source).body, "")
    return missing


def test_every_public_definition_has_a_docstring():
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 90                          # the walk found the package
    missing = [m for p in paths
               for m in undocumented(p.read_text(encoding="utf-8"),
                                     str(p.relative_to(PACKAGE.parent)))]
    assert missing == []


def test_the_check_catches_missing_docstrings():
    source = '''
def f():
    return 1

def _private():
    return 2

class A:
    """Documented."""
    x: int

    def method(self):
        return 3

    @property
    def prop(self):
        """Documented."""

    def _helper(self):
        return 4

class _Hidden:
    def method(self):
        return 5

class B:
    def __init__(self):
        pass
'''
    assert undocumented(source, "m.py") == ["m.py:2 f", "m.py:12 A.method", "m.py:26 B"]
