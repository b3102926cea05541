"""The tree stays clean: ruff's lint and format, and mypy over the package, the tests, the
benchmarks, the scripts and the examples (so tests are type-checked with the package)."""

from __future__ import annotations

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
