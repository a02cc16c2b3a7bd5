"""The source stays easy to read: no file in engine/ or iz_tui/ over 500 lines, and no function over 60 lines
unless its docstring says why (a paragraph starting "Length:"). Import circles: tests/unit/test_import_cycles.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for pkg in ("engine", "iz_tui") for p in (ROOT / pkg).rglob("*.py"))
MAX_FILE, MAX_FUNCTION = 500, 60


def test_no_source_file_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in FILES if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE}
    assert long == {}, "split these into modules with names that say what they hold"


def test_no_function_over_60_lines_unless_its_docstring_says_why() -> None:
    unexplained = []
    for p in FILES:
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION and "Length:" not in (ast.get_docstring(node) or ""):
                    unexplained.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert unexplained == []
