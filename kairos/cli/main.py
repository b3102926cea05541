"""The ``kairos`` command: one click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib

import click

from kairos.cli.entry import run_command

# Each module defines COMMANDS, a list of click commands. Add a line to add a module.
COMMAND_MODULES = [
    "kairos.cli.simulate",
    "kairos.cli.demo",
    "kairos.cli.serve",
    "kairos.cli.worker",
    "kairos.cli.plan",
    "kairos.cli.compare",
    "kairos.cli.advise",
    "kairos.cli.profile",
    "kairos.cli.scale",
    "kairos.cli.trace",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kairos")
def cli() -> None:
    """Kairos: pick and serve a cost-efficient heterogeneous inference pool under a QoS target."""


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(_name).COMMANDS:
        cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input prints one line with a "To fix:" hint and exits with status 2."""
    run_command(cli, argv, "kairos")


if __name__ == "__main__":
    main()
