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
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kairos")
def cli() -> None:
    """Kairos: pick and serve a cost-efficient heterogeneous inference pool under a QoS target."""


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(_name).COMMANDS:
        cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input prints one line with a "To fix:" hint and exits with status 2.

    That holds for click's own usage errors too (unknown option, missing value, bad choice,
    value of the wrong type): they are rewritten into the same one-line form.
    """
    try:
        status = cli.main(args=argv, prog_name="kairos", standalone_mode=False)
    except KairosError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as err:
        click.echo(f"error: {usage_line(err, argv)}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        hint = "check the path and its permissions."
        click.echo(f"error: {_one_line(err.format_message())} To fix: {hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    if isinstance(status, int) and status != 0:  # a command's click.exceptions.Exit(status)
        sys.exit(status)


def usage_line(err: click.UsageError, argv: list[str] | None = None) -> str:
    """A click usage error as ``<command>: <what> To fix: <hint>`` on one line."""
    command = _command_path(err, sys.argv[1:] if argv is None else argv)
    message = _one_line(err.format_message())
    if not message.endswith((".", "?", ")")):
        message += "."
    if isinstance(err, click.MissingParameter):
        hint = f"add it ('{command} --help' lists every option)."
    elif isinstance(err, click.BadParameter):
        hint = f"pass a value it accepts (the choices or range are in '{command} --help')."
    elif isinstance(err, click.NoSuchOption):
        hint = f"use an option that '{command}' has ('{command} --help' lists them)."
    else:
        hint = f"see '{command} --help' for the usage."
    return f"{command}: {message} To fix: {hint}"


def _command_path(err: click.UsageError, argv: list[str]) -> str:
    """The failing command: from click's context, else the first word naming a command (an
    option missing its value is reported before the subcommand's context exists)."""
    if err.ctx is not None and err.ctx.command is not cli:
        return err.ctx.command_path
    name = next((a for a in argv if not a.startswith("-")), None)
    return f"kairos {name}" if name in cli.commands else "kairos"


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
