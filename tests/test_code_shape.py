"""The code-shape figures of issue 19 stay true: short functions and bounded complexity in src/.

* No function or method in ``src/recforge`` is longer than :data:`MAX_LINES` lines, counted from
  its ``def`` line to its last line, docstring included (decorators excluded), unless it is a
  declarative table listed in :data:`DECLARATIVE_TABLES`.
* ruff's complexity rule (C901) is selected with ``max-complexity = 15`` and nothing in src/
  opts out of it (no per-file ignore, no ``noqa``); ``ruff check`` enforces the rest.
"""

from __future__ import annotations

import ast
import functools
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "recforge"
MAX_LINES = 80

#: ``"module/path.py:Qualified.name"`` of functions allowed over MAX_LINES because they are
#: declarative tables (a literal listing, not logic). Keep it short; today none is needed.
DECLARATIVE_TABLES: frozenset[str] = frozenset()


def _functions(path: Path) -> list[tuple[str, int]]:
    """``(qualified name, length in lines)`` of every function and method in ``path``."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                assert child.end_lineno is not None
                out.append((name, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "")
    return out


@functools.cache
def _all_functions() -> dict[str, int]:
    return {
        f"{path.relative_to(SRC).as_posix()}:{name}": length
        for path in sorted(SRC.rglob("*.py"))
        for name, length in _functions(path)
    }


def test_scanner_counts_def_to_last_line_with_docstring(tmp_path: Path) -> None:
    source = '''
class A:
    def method(self):
        """Doc."""

        def inner():
            return 1
        return inner


@decorator
def top(x):
    return x
'''
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert dict(_functions(path)) == {"A.method": 6, "A.method.inner": 2, "top": 2}


def test_no_function_in_src_over_80_lines() -> None:
    functions = _all_functions()
    assert len(functions) > 500, "the scan found too few functions; is SRC right?"
    long = {name: n for name, n in functions.items() if n > MAX_LINES}
    offenders = sorted(
        (f"{name} ({n} lines)" for name, n in long.items() if name not in DECLARATIVE_TABLES),
        key=str.lower,
    )
    assert not offenders, (
        f"functions over {MAX_LINES} lines (split them into named parts, or list a declarative "
        "table in DECLARATIVE_TABLES): " + ", ".join(offenders)
    )


def test_declarative_tables_allowlist_is_current() -> None:
    # An entry that is gone or no longer long must leave the list, so it stays short and true.
    functions = _all_functions()
    stale = sorted(n for n in DECLARATIVE_TABLES if functions.get(n, 0) <= MAX_LINES)
    assert not stale, f"remove from DECLARATIVE_TABLES: {stale}"


def test_ruff_complexity_rule_enabled_for_all_of_src() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"]
    assert lint["mccabe"]["max-complexity"] == 15
    assert "C901" not in lint.get("ignore", [])
    for pattern, rules in lint.get("per-file-ignores", {}).items():
        outside_src = pattern.startswith(("tests/", "benchmarks/"))
        assert "C901" not in rules or outside_src, f"C901 ignored for {pattern}"
    noqa = re.compile(r"#\s*noqa\b[^\n]*C901")
    waived = [
        p.relative_to(ROOT).as_posix()
        for p in SRC.rglob("*.py")
        if noqa.search(p.read_text(encoding="utf-8"))
    ]
    assert not waived, f"C901 waived by noqa in {waived}"
