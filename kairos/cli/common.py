"""Options and helpers shared by every CLI command (workload and data options)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from tqdm import tqdm

from kairos.catalog import Pool, load_prices
from kairos.profiles import load_profiles
from kairos.scenario import Scenario
from kairos.workload import parse_mix

F = TypeVar("F", bound=Callable[..., Any])


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
            type=float,
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
    return Scenario.build(
        model,
        qos_ms=qos_ms,
        profiles=load_profiles(profiles_path) if profiles_path else None,
        prices=load_prices(prices_path) if prices_path else None,
        mix=parse_mix(batch_mix),
    )


def parse_pool(scenario: Scenario, text: str) -> Pool:
    """Parse ``TYPE=N,...`` and check every type has a profile and a price."""
    pool = Pool.parse(text)
    for t in pool.types:
        scenario.profiles.get(t)
        scenario.prices.price_per_hr(t)
    return pool


def emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=False))


@contextmanager
def progress_bar(enabled: bool, desc: str, total: int | None = None) -> Iterator[Any]:
    """A tqdm bar on a terminal; a no-op object otherwise (and always in --json mode)."""
    show = enabled and sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, disable=not show, leave=False, file=sys.stderr)
    try:
        yield bar
    finally:
        bar.close()


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


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
