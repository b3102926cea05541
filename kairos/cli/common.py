"""Options and helpers shared by every CLI command.

Parameter types: ``bounded(RANGE)`` for every numeric option and ``BoundedList(RANGE)`` for
lists of numbers (the ranges live in ``kairos.limits``; a value outside one is refused while
the command line is parsed, before any work or allocation), ``HOST`` for addresses to bind,
``output_file`` for files written at the end of a run (checked, and their folder created,
before the run starts). Then the workload and data options, and progress, table and JSON
helpers.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from kairos import limits
from kairos.aio import check_bind_host
from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.limits import Range
from kairos.scenario import Scenario
from kairos.text import table as table  # re-exported: the commands import it from here
from kairos.workload import parse_mix

F = TypeVar("F", bound=Callable[..., Any])


def _option_name(param: click.Parameter | None, limit: Range) -> str:
    if isinstance(param, click.Option) and param.opts:
        return max(param.opts, key=len)
    return limit.option


class BoundedFloat(click.FloatRange):
    """A finite number within a ``Range``; click's help shows the range."""

    def __init__(self, limit: Range) -> None:
        super().__init__(min=limit.lo, max=limit.hi, min_open=limit.lo_open)
        self.limit = limit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        return self.limit.check(number, _option_name(param, self.limit))


class BoundedInt(click.IntRange):
    """A whole number within a ``Range``; click's help shows the range."""

    def __init__(self, limit: Range) -> None:
        super().__init__(min=int(limit.lo), max=int(limit.hi))
        self.limit = limit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        return self.limit.check(number, _option_name(param, self.limit))


def bounded(limit: Range) -> click.ParamType:
    """The click type of a numeric option whose valid values are ``limit``."""
    return BoundedInt(limit) if limit.integer else BoundedFloat(limit)


class BoundedList(click.ParamType):
    """A number or a comma-separated list of numbers, each within a ``Range`` (the text is
    kept as given once every value is checked)."""

    name = "list"

    def __init__(self, limit: Range) -> None:
        self.limit = limit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        option = _option_name(param, self.limit)
        for part in str(value).split(","):
            try:
                number = float(part)
            except ValueError:
                raise ConfigError(
                    f"{option} {part.strip()!r} (in {str(value)!r}) is not a number.",
                    f"pass {option} as a number or a comma-separated list like 1.5,2.5,4.",
                ) from None
            self.limit.check(number, option)
        return value


class NameList(click.ParamType):
    """One name or a comma-separated list of them (at least one); the text is kept."""

    name = "names"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not [n for n in str(value).split(",") if n.strip()]:
            option = max(param.opts, key=len) if isinstance(param, click.Option) else "value"
            raise ConfigError(
                f"{option} {value!r} names nothing.",
                f"pass {option} with a name, or a comma-separated list of names.",
            )
        return value


class HostType(click.ParamType):
    """An address this machine can bind (checked by binding it with port 0)."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return check_bind_host(str(value))


HOST = HostType()


class WorkerAddresses(click.ParamType):
    """``local``, or HOST:PORT,... (ports 1..65535, at most one per pool instance)."""

    name = "workers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if text == "local":
            return text
        addresses = [a.strip() for a in text.split(",") if a.strip()]
        bad = [a for a in addresses if not _is_host_port(a)]
        if not addresses or bad or len(addresses) > limits.MAX_POOL_INSTANCES:
            what = (
                f"{bad[0]!r} is not HOST:PORT with a port in 1..65535"
                if bad
                else (
                    "lists no address"
                    if not addresses
                    else f"lists {len(addresses):,} addresses, above the pool cap of "
                    f"{limits.MAX_POOL_INSTANCES:,}"
                )
            )
            raise ConfigError(
                f"--workers {text!r}: {what}.",
                "pass --workers local, or one HOST:PORT per instance in pool order, e.g. "
                "127.0.0.1:7001,127.0.0.1:7002.",
            )
        return text


def _is_host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


WORKERS = WorkerAddresses()


class HandlerSpec(click.ParamType):
    """``module:callable`` whose top-level package can be found (as a worker would find it,
    with the current folder on the path); the worker imports it."""

    name = "module:callable"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        module, sep, attr = text.partition(":")
        fix = "pass --handler as MODULE:CALLABLE with MODULE importable from here."
        if not sep or not module or not attr.isidentifier():
            raise ConfigError(f"--handler {text!r} is not MODULE:CALLABLE.", fix)
        top = module.split(".")[0]
        path = [os.getcwd(), *sys.path]
        found = top in sys.builtin_module_names or (
            top.isidentifier() and importlib.machinery.PathFinder.find_spec(top, path) is not None
        )
        if not found:
            raise ConfigError(f"--handler {text!r}: no module {top!r} can be found.", fix)
        return text


HANDLER = HandlerSpec()


def check_output_path(
    text: str, option: str, suffixes: tuple[str, ...] = (), folder: bool = False
) -> Path:
    """Refuse an output path that cannot be written, before any work; create its folder.

    ``suffixes`` (lower case, with the dot) are the formats written there; ``folder`` means
    the path is a folder to write files into.
    """
    p = Path(text)
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(
            f"{option} {text!r} is a file, not a folder.",
            "pass a folder (it is created if missing).",
        )
    if not folder and p.is_dir():
        raise ConfigError(
            f"{option} {text!r} is a folder, not a file.",
            f"pass a file name inside it, e.g. {p / ('out' + (suffixes or ('',))[0])}.",
        )
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{option} {text!r}: the format is chosen by the file's suffix, and "
            f"{repr(p.suffix) if p.suffix else 'a name without one'} is not one Kairos writes.",
            f"name the file with one of {', '.join(suffixes)}.",
        )
    target = p if folder else p.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option} {text!r}: cannot write in folder {str(target)!r} ({exc.strerror or exc}).",
            "pass a path in a folder you can write to.",
        ) from None
    return p


class OutputPath(click.ParamType):
    """A file (or folder) written at the end of a run, checked before the run starts."""

    name = "path"

    def __init__(self, suffixes: tuple[str, ...] = (), folder: bool = False) -> None:
        self.suffixes = suffixes
        self.folder = folder

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        option = max(param.opts, key=len) if isinstance(param, click.Option) else "path"
        check_output_path(str(value), option, self.suffixes, self.folder)
        return str(value)


def output_file(*suffixes: str) -> click.ParamType:
    return OutputPath(suffixes)


def data_options(func: F) -> F:
    """--batch-mix, --profiles, --prices: the workload and the data it is judged on."""
    options = [
        click.option(
            "--batch-mix",
            default="production",
            show_default=True,
            help="production | fixed:N | FILE.csv with columns batch_size,weight.",
        ),
        click.option(
            "--profiles",
            "profiles_path",
            type=click.Path(),
            default=None,
            help="Latency profile CSV (model,instance_type,batch_size,latency_ms).",
        ),
        click.option(
            "--prices",
            "prices_path",
            type=click.Path(),
            default=None,
            help="Price CSV (instance_type,price_per_hr).",
        ),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def scenario_options(func: F) -> F:
    """--model, --qos-ms and the data options (every single-scenario command takes these)."""
    options = [
        click.option(
            "--model",
            "-m",
            default="rm2",
            show_default=True,
            help="Model name in the profiles (built-in: rm2, wnd, mtwnd, dien, ncf).",
        ),
        click.option(
            "--qos-ms",
            type=bounded(limits.QOS_MS),
            default=None,
            help="p99 latency target in ms (default: the model's built-in target).",
        ),
    ]
    func = data_options(func)
    for opt in reversed(options):
        func = opt(func)
    return func


def build_scenario(
    model: str,
    qos_ms: float | None,
    batch_mix: str,
    profiles_path: str | None,
    prices_path: str | None,
) -> Scenario:
    return Scenario.from_files(
        model,
        qos_ms=qos_ms,
        profiles_path=profiles_path,
        prices_path=prices_path,
        mix=parse_mix(batch_mix),
    )


def require_one_goal(
    command: str, budget: object, target: object, budget_meaning: str, target_meaning: str
) -> None:
    """Refuse a command line that gives both or neither of --budget-per-hr and --target-qps;
    the meanings say what each asks of ``command`` (they differ per command)."""
    if (budget is None) == (target is None):
        raise ConfigError(
            f"kairos {command} needs exactly one of --budget-per-hr and --target-qps.",
            f"pass --budget-per-hr B ({budget_meaning}) or --target-qps R ({target_meaning}).",
        )


def parse_pool(scenario: Scenario, text: str) -> Pool:
    """Parse ``TYPE=N,...`` and check every type has a profile and a price."""
    return scenario.check_pool(Pool.parse(text))


def emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False))


class PlainProgress:
    """Progress as plain lines on stderr, for when it is not a terminal (a log, a pipe).

    A line on the first step and then at most one every ``every_s`` seconds, plus the last
    one, so a long run shows it is alive without flooding a log.
    """

    def __init__(self, desc: str, total: int | None, every_s: float = 5.0) -> None:
        self.desc = desc
        self.total = total
        self.n = 0
        self.postfix = ""
        self._every_s = every_s
        self._t0 = time.monotonic()
        self._last_t: float | None = None
        self._shown = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self._last_t is None or now - self._last_t >= self._every_s:
            self._show(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _show(self, now: float) -> None:
        self._last_t = now
        self._shown = self.n
        of = f"/{self.total}" if self.total else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        click.echo(f"{self.desc}: {self.n}{of} done{extra}, {now - self._t0:.0f} s", err=True)

    def close(self) -> None:
        if self.n and self._shown != self.n:
            self._show(time.monotonic())


@contextmanager
def progress_bar(enabled: bool, desc: str, total: int | None = None) -> Iterator[Any]:
    """A tqdm bar on a terminal, plain stderr lines otherwise; nothing unless ``enabled``."""
    bar: Any
    if enabled and not sys.stderr.isatty():
        bar = PlainProgress(desc, total)
    else:
        bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


def policy_options_option(func: F) -> F:
    """--policy-option KEY=VALUE (repeatable): constructor options of the chosen policy."""
    return click.option(
        "--policy-option",
        "policy_option_texts",
        multiple=True,
        metavar="KEY=VALUE",
        help="Policy option, e.g. safeguard_frac=0.1 (repeatable; values are JSON literals).",
    )(func)


def parse_policy_options(texts: tuple[str, ...]) -> dict[str, Any]:
    """``("safeguard_frac=0.1", "paper=true")`` -> ``{"safeguard_frac": 0.1, "paper": True}``."""
    from kairos.errors import ConfigError

    options: dict[str, Any] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(
                f"--policy-option {text!r} is not KEY=VALUE.",
                "write e.g. --policy-option safeguard_frac=0.1.",
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = value
    return options
