"""Prices, default QoS targets and pools (how many instances of each type).

Prices are data: a CSV ``instance_type,price_per_hr``. The built-in table holds the AWS
on-demand prices the KAIROS paper used (``kairos/data/aws_prices.csv``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from kairos.csvio import Column, read_csv
from kairos.errors import ConfigError, PoolError, PriceError, UnknownInstanceTypeError
from kairos.limits import MAX_POOL_INSTANCES, QOS_MS, Range

# p99 latency targets (ms) the paper's artifact uses for each recommendation model.
DEFAULT_QOS_MS: Mapping[str, float] = {
    "rm2": 350.0,
    "wnd": 25.0,
    "mtwnd": 25.0,
    "dien": 35.0,
    "ncf": 5.0,
}


def default_qos_ms(model: str) -> float:
    try:
        return DEFAULT_QOS_MS[model]
    except KeyError:
        raise ConfigError(
            f"model {model!r} has no default QoS target (defaults exist for "
            f"{', '.join(DEFAULT_QOS_MS)}).",
            "pass --qos-ms with the p99 latency target in milliseconds.",
        ) from None


def check_qos_ms(qos_ms: float) -> float:
    return QOS_MS.check(qos_ms)


@dataclass(frozen=True)
class PriceTable:
    """Hourly on-demand price of each instance type."""

    prices_per_hr: Mapping[str, float]
    source: str = "<memory>"

    def price_per_hr(self, instance_type: str) -> float:
        try:
            return self.prices_per_hr[instance_type]
        except KeyError:
            known = ", ".join(sorted(self.prices_per_hr))
            raise UnknownInstanceTypeError(
                f"instance type {instance_type!r} has no price in {self.source} (known: {known}).",
                "add a row 'TYPE,PRICE' to the prices file passed with --prices.",
            ) from None

    @property
    def instance_types(self) -> tuple[str, ...]:
        return tuple(self.prices_per_hr)


PRICE_COLUMNS = (
    Column("instance_type"),
    Column("price_per_hr", Range("price_per_hr", 0, 1e6, "$/h", lo_open=True)),
)


def load_prices(path: str | Path) -> PriceTable:
    """A price CSV ``instance_type,price_per_hr``; a type listed twice is an error."""
    prices: dict[str, float] = {}
    for line, (name, price) in read_csv(path, "price file", PRICE_COLUMNS, PriceError):
        if name in prices:
            raise PriceError(
                f"{path} line {line}: instance type {name!r} is listed a second time.",
                "give each instance type one price row.",
            )
        prices[name] = price
    return PriceTable(prices, str(path))


# The built-in table is read once per process: a Scenario without prices asks for it each
# time (hundreds of times in the test suite, about 2 ms each). Every call gets its own dict.
@cache
def _default_price_items() -> tuple[tuple[str, float], ...]:
    ref = resources.files("kairos.data").joinpath("aws_prices.csv")
    with resources.as_file(ref) as p:
        return tuple(load_prices(p).prices_per_hr.items())


def default_prices() -> PriceTable:
    return PriceTable(dict(_default_price_items()), "built-in AWS prices")


def split_type_count(text: str) -> tuple[str, int] | None:
    """``"TYPE=N"`` -> ``("TYPE", N)``; None unless N is a whole number >= 0 and TYPE is set.

    Pools and ``--max`` caps share this syntax; each caller raises its own error.
    """
    name, sep, count = text.partition("=")
    try:
        n = int(count)
    except ValueError:
        return None
    if not sep or not name.strip() or n < 0:
        return None
    return name.strip(), n


@dataclass(frozen=True)
class Pool:
    """How many instances of each type: ``counts`` as ((type, n), ...) with n >= 1, in order."""

    counts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, counts: Mapping[str, int] | Iterable[tuple[str, int]]) -> Pool:
        items = counts.items() if isinstance(counts, Mapping) else counts
        merged: dict[str, int] = {}
        for itype, n in items:
            if not isinstance(n, int) or n < 0:
                raise PoolError(
                    f"count {n!r} for instance type {itype!r} is not a whole number >= 0.",
                    "write pools as TYPE=N with N a non-negative integer.",
                )
            merged[itype] = merged.get(itype, 0) + n
        return cls(tuple((t, n) for t, n in merged.items() if n > 0))

    @classmethod
    def parse(cls, text: str) -> Pool:
        """Parse ``TYPE=N,TYPE=N`` (for example ``g4dn.xlarge=2,r5n.large=9``).

        A type given twice is an error (not a sum), and a pool holds at most
        ``MAX_POOL_INSTANCES`` instances (docs/limits.md), checked before anything is built.
        """
        pairs: dict[str, int] = {}
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            pair = split_type_count(part)
            if pair is None:
                raise PoolError(
                    f"pool entry {part!r} is not TYPE=N with N a whole number >= 0.",
                    "write pools like g4dn.xlarge=2,r5n.large=9.",
                )
            if pair[0] in pairs:
                raise PoolError(
                    f"pool {text!r} names instance type {pair[0]!r} twice.",
                    f"give each type once, with its total count (e.g. {pair[0]}="
                    f"{pairs[pair[0]] + pair[1]}).",
                )
            pairs[pair[0]] = pair[1]
        total = sum(pairs.values())
        if total > MAX_POOL_INSTANCES:
            raise PoolError(
                f"pool {text!r} has {total:,} instances, above the cap of "
                f"{MAX_POOL_INSTANCES:,} (docs/limits.md).",
                f"give at most {MAX_POOL_INSTANCES:,} instances in all.",
            )
        pool = cls.of(pairs)
        if pool.size == 0:
            raise PoolError(
                f"pool {text!r} has no instances.",
                "give at least one TYPE=N with N >= 1, for example g4dn.xlarge=2,r5n.large=9.",
            )
        return pool

    @property
    def size(self) -> int:
        return sum(n for _, n in self.counts)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.counts)

    def count(self, instance_type: str) -> int:
        return dict(self.counts).get(instance_type, 0)

    def instance_types(self) -> tuple[str, ...]:
        """One entry per instance, grouped by type in pool order."""
        return tuple(t for t, n in self.counts for _ in range(n))

    def cost_per_hr(self, prices: PriceTable) -> float:
        return sum(n * prices.price_per_hr(t) for t, n in self.counts)

    def __str__(self) -> str:
        return ",".join(f"{t}={n}" for t, n in self.counts)

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)
