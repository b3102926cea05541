"""Run the ``kairos`` command in-process, as a user would from a shell."""

from __future__ import annotations

import pytest

from kairos.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``kairos ARGV``."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
