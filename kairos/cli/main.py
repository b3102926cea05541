"""The ``kairos`` command: one click group; each subcommand lives in its own module."""

from __future__ import annotations

import importlib
import sys

import click

from kairos.errors import KairosError

# Each module defines COMMANDS, a list of click commands. Add a line to add a module.
COMMAND_MODULES = [
    "kairos.cli.simulate",
    "kairos.cli.demo",
    "kairos.cli.serve",
    "kairos.cli.plan",
    "kairos.cli.compare",
    "kairos.cli.profile",
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
    try:
        cli.main(args=argv, prog_name="kairos", standalone_mode=False)
    except KairosError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
