"""The tree stays clean: ruff's lint and format, and mypy over the package, the tests, the
benchmarks, the scripts and the examples (so tests are type-checked with the package)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
CHECKED = ["kairos", "tests", "benchmarks", "scripts", "examples"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_and_format_are_clean() -> None:
    lint = run("ruff", "check", *CHECKED)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = run("ruff", "format", "--check", *CHECKED)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_mypy_is_clean_on_package_tests_and_benchmarks() -> None:
    res = run("mypy", *CHECKED)
    assert res.returncode == 0, res.stdout[-3000:]


MAX_LINES = 250  # the house rule: no function or class longer than this


def long_definitions(source: str) -> list[tuple[str, int]]:
    """Every function or class in ``source`` longer than ``MAX_LINES``, with its length."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, kinds):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_LINES:
                found.append((node.name, length))
    return found


def test_the_length_check_sees_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_definitions(f"def f():\n{body}\n") == [("f", MAX_LINES + 1)]
    assert long_definitions("def g():\n    return 1\n") == []


def test_no_function_or_class_is_over_250_lines() -> None:
    too_long = [
        f"{path.relative_to(ROOT)}: {name} ({length} lines)"
        for top in CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
        for name, length in long_definitions(path.read_text())
    ]
    assert not too_long, "split these: " + "; ".join(too_long)
