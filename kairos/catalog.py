"""Prices, default QoS targets and pools (how many instances of each type).

Prices are data: a CSV ``instance_type,price_per_hr``. The built-in table holds the AWS
on-demand prices the KAIROS paper used (``kairos/data/aws_prices.csv``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kairos.errors import ConfigError, PoolError, PriceError, UnknownInstanceTypeError

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
    if not math.isfinite(qos_ms) or qos_ms <= 0:
        raise ConfigError(
            f"QoS target {qos_ms!r} ms is not a positive number.",
            "pass --qos-ms as a p99 latency target in milliseconds, for example 350.",
        )
    return float(qos_ms)


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


def load_prices(path: str | Path) -> PriceTable:
    p = Path(path)
    if not p.is_file():
        raise PriceError(
            f"price file {str(p)!r} does not exist.",
            "pass the path of a CSV with columns instance_type,price_per_hr.",
        )
    prices: dict[str, float] = {}
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "instance_type" not in header or "price_per_hr" not in header:
            raise PriceError(
                f"price file {str(p)!r} has columns {', '.join(header) or 'none'}.",
                "write a CSV header 'instance_type,price_per_hr'.",
            )
        for line_no, row in enumerate(reader, start=2):
            name = (row["instance_type"] or "").strip()
            text = row["price_per_hr"]
            try:
                price = float(text or "")
            except ValueError:
                price = float("nan")
            if not name or not math.isfinite(price) or price <= 0:
                raise PriceError(
                    f"{p} line {line_no}: price {text!r} for {name or '<empty>'!r} is not a "
                    "positive number.",
                    "give every instance type a positive hourly price in dollars.",
                )
            prices[name] = price
    if not prices:
        raise PriceError(f"price file {str(p)!r} has no rows.", "add 'TYPE,PRICE' rows.")
    return PriceTable(prices, str(p))


def default_prices() -> PriceTable:
    ref = resources.files("kairos.data").joinpath("aws_prices.csv")
    with resources.as_file(ref) as p:
        table = load_prices(p)
    return PriceTable(table.prices_per_hr, "built-in AWS prices")


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
        """Parse ``TYPE=N,TYPE=N`` (for example ``g4dn.xlarge=2,r5n.large=9``)."""
        pairs: list[tuple[str, int]] = []
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
            pairs.append(pair)
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
