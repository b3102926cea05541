"""The ``kairos`` group loads a command's module only when that command runs, and its table of
command names matches what the modules define."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click

from kairos.cli.main import COMMAND_MODULES, cli


def test_the_command_table_names_every_command_of_every_module() -> None:
    for module in set(COMMAND_MODULES.values()):
        names = [c.name for c in importlib.import_module(module).COMMANDS]
        listed = [name for name, where in COMMAND_MODULES.items() if where == module]
        assert sorted(names) == sorted(listed), module
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert cli.get_command(ctx, "nope") is None


def loaded_by(module: str, *argv: str) -> set[str]:
    """The kairos and scipy modules a fresh ``python -m MODULE ARGV`` has imported when it
    exits."""
    probe = (
        "import json, runpy, sys\n"
        f"sys.argv = [{module!r}, *{list(argv)!r}]\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('kairos', 'scipy')]))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_a_worker_process_imports_neither_scipy_nor_the_planner() -> None:
    # Every worker the router's supervisor, the tests and the demos start pays its imports:
    # scipy alone doubled a replay worker's start-up CPU.
    loaded = loaded_by("kairos.cli.worker", "--help")
    assert "kairos.serving.worker.service" in loaded
    assert not {m for m in loaded if m.startswith(("scipy", "kairos.allocator", "kairos.sim"))}


def test_kairos_serve_loads_only_its_own_command_module() -> None:
    loaded = loaded_by("kairos", "serve", "--help")
    assert "kairos.cli.serve" in loaded
    assert not {"kairos.cli.compare", "kairos.cli.plan", "kairos.plots"} & loaded
