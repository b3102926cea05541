"""The ``kairos`` command: one click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib

import click

from kairos.cli.entry import run_command

# Each command's name and the module whose COMMANDS list holds it. Add a line to add a
# command. Only the module of the command being run is imported: a router started as
# `kairos serve` (by the tests, the demos and the cell set) then skips the planner's, the
# comparison's and the plots' imports. tests/cli/test_main.py checks this table against the
# modules' COMMANDS.
COMMAND_MODULES = {
    "simulate": "kairos.cli.simulate",
    "capacity": "kairos.cli.simulate",
    "demo": "kairos.cli.demo",
    "serve": "kairos.cli.serve",
    "loadgen": "kairos.cli.serve",
    "worker": "kairos.cli.worker",
    "plan": "kairos.cli.plan",
    "compare": "kairos.cli.compare",
    "advise": "kairos.cli.advise",
    "profile": "kairos.cli.profile",
    "scale": "kairos.cli.scale",
    "status": "kairos.cli.scale",
    "stop": "kairos.cli.scale",
    "trace": "kairos.cli.trace",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module the first time the command is asked for
    (``kairos --help`` asks for every one, so it still lists them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            for command in importlib.import_module(COMMAND_MODULES[cmd_name]).COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kairos")
def cli() -> None:
    """Kairos: pick and serve a cost-efficient heterogeneous inference pool under a QoS target."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input prints one line with a "To fix:" hint and exits with status 2."""
    run_command(cli, argv, "kairos")


if __name__ == "__main__":
    main()
