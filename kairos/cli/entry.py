"""Running a click command the Kairos way: bad input is one line with a "To fix:" hint and
exit status 2, whatever raised it (a ``KairosError``, or click's own usage errors: unknown
option, missing value, bad choice, value of the wrong type). Used by ``kairos`` and by
``python -m kairos.cli.worker`` (which must start without importing the whole CLI).
"""

from __future__ import annotations

import sys

import click

from kairos.errors import KairosError


def run_command(command: click.Command, argv: list[str] | None, prog_name: str) -> None:
    try:
        status = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except KairosError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as err:
        click.echo(f"error: {usage_line(err, command, argv, prog_name)}", err=True)
        sys.exit(2)
    except click.ClickException as err:
        hint = "check the path and its permissions."
        click.echo(f"error: {_one_line(err.format_message())} To fix: {hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    if isinstance(status, int) and status != 0:  # a command's click.exceptions.Exit(status)
        sys.exit(status)


def usage_line(
    err: click.UsageError,
    root: click.Command,
    argv: list[str] | None = None,
    prog_name: str = "kairos",
) -> str:
    """A click usage error as ``<command>: <what> To fix: <hint>`` on one line."""
    command = _command_path(err, root, sys.argv[1:] if argv is None else argv, prog_name)
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


def _command_path(
    err: click.UsageError, root: click.Command, argv: list[str], prog_name: str
) -> str:
    """The failing command: from click's context, else the first word naming a command (an
    option missing its value is reported before the subcommand's context exists)."""
    if err.ctx is not None and err.ctx.command is not root:
        return err.ctx.command_path
    # list_commands, not .commands: the kairos group loads its commands on first use.
    commands = root.list_commands(click.Context(root)) if isinstance(root, click.Group) else []
    name = next((a for a in argv if not a.startswith("-")), None)
    return f"{prog_name} {name}" if name in commands else prog_name


def _one_line(text: str) -> str:
    return " ".join(text.split())
