"""The code's shape: one-way layers, short functions, no printing library.

These guard the architecture described in docs/architecture.md: each rule here
failed on the code before the restructuring.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ps3d_toolkit"
MAX_FUNCTION_LINES = 80


def _library_files():
    return sorted(PACKAGE.rglob("*.py"))


def _code_lines(node: ast.AST) -> int:
    """Lines of a function, its docstring not counted."""
    lines = node.end_lineno - node.lineno + 1
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


def test_layers_contract_holds():
    """``lint-imports`` checks the layer contracts declared in pyproject.toml."""
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


def test_no_function_is_longer_than_a_screen():
    too_long = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _code_lines(node) > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                    f"({_code_lines(node)} lines)")
    assert not too_long, "functions over 80 lines of code: " + ", ".join(too_long)


def test_the_library_logs_instead_of_printing():
    """Only the command line writes to the terminal; the library logs or warns."""
    printing = []
    for path in _library_files():
        if path.is_relative_to(PACKAGE / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not printing, "print() in the library: " + ", ".join(printing)


def _lint_imports(cwd: Path, env=None):
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is not installed; it comes with the package's [test] extra")
    return subprocess.run([command], cwd=cwd, capture_output=True, text=True, env=env)


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    """A deferred import (inside a function) from a lower layer to a higher one is caught."""
    import os

    copy = tmp_path / "tree"
    shutil.copytree(PACKAGE, copy / "ps3d_toolkit", ignore=shutil.ignore_patterns("*.pt", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    checks = copy / "ps3d_toolkit" / "core" / "checks.py"
    checks.write_text(checks.read_text() + "\n\ndef _planted():\n    from ps3d_toolkit.cli import main\n")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    result = _lint_imports(copy, env)
    assert result.returncode != 0
    assert "ps3d_toolkit.core.checks -> ps3d_toolkit.cli" in result.stdout
