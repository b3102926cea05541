"""``python -m kairos.runtime``: the worker command alone (starts fast: no CLI-wide imports)."""

import sys

import click

from kairos.errors import KairosError
from kairos.runtime.worker import worker_command

try:
    worker_command.main(prog_name="kairos worker", standalone_mode=False)
except KairosError as err:
    click.echo(f"error: {err}", err=True)
    sys.exit(2)
except click.ClickException as err:
    err.show()
    sys.exit(2)
