"""Synthetic instance catalogs for tests and benchmarks of the optimiser at scale.

Every type of the price list (``kairos/data/aws_prices.csv``, 16 types) gets a profile: types
that were measured keep their real profile; the others scale the measured profile of a
template type of the same family (g: the GPU, c: c5n, r and m: r5n, t: t3) by a speed factor
``(price / template price) ** 0.8`` with log-normal noise. Beyond the price list, variants
``TYPE~k`` with jittered prices and speeds are added. Deterministic in ``seed``.
"""

from __future__ import annotations

import numpy as np

from kairos.catalog import PriceTable, default_prices
from kairos.errors import ConfigError
from kairos.profiles import LatencyProfile, ModelProfiles, default_profiles
from kairos.scenario import Scenario

TEMPLATES = {
    "g": "g4dn.xlarge",
    "c": "c5n.2xlarge",
    "r": "r5n.large",
    "m": "r5n.large",
    "t": "t3.xlarge",
}
SPEED_EXPONENT = 0.8
SPEED_NOISE = 0.15


def _template(name: str) -> str:
    return TEMPLATES.get(name[:1], "r5n.large")


def synthetic_scenario(
    model: str = "rm2", n_types: int = 16, *, seed: int = 0, qos_ms: float | None = None
) -> Scenario:
    """A scenario whose catalog has ``n_types`` priced, profiled instance types."""
    if n_types < 1:
        raise ConfigError(f"n_types {n_types!r} is not >= 1.", "ask for at least one type.")
    rng = np.random.default_rng(seed)
    profiles = default_profiles()
    real = profiles.model(model)
    base_prices = dict(default_prices().prices_per_hr)
    names = list(base_prices)
    rng.shuffle(names)
    prices: dict[str, float] = {}
    by_type: dict[str, LatencyProfile] = {}
    for k in range(n_types):
        src = names[k % len(names)]
        name = src if k < len(names) else f"{src}~{k // len(names)}"
        jitter = 1.0 if k < len(names) else float(rng.lognormal(0.0, 0.2))
        price = round(base_prices[src] * jitter, 4)
        tmpl = _template(src)
        if src in real.by_type and k < len(names):
            prof = real.get(src)
            by_type[name] = LatencyProfile(model, name, prof.batch_sizes, prof.quantiles_ms)
        else:
            ratio = price / base_prices[tmpl]
            speed = ratio**SPEED_EXPONENT * float(rng.lognormal(0.0, SPEED_NOISE))
            prof = real.get(tmpl)
            by_type[name] = LatencyProfile(model, name, prof.batch_sizes, prof.quantiles_ms / speed)
        prices[name] = price
    base = Scenario.build(model, qos_ms=qos_ms, profiles=profiles)
    return Scenario(
        model=model,
        qos_ms=base.qos_ms,
        profiles=ModelProfiles(model, by_type),
        prices=PriceTable(prices, f"synthetic catalog (seed {seed})"),
        mix=base.mix,
    )


# Variant catalogs: the measured types plus faster and slower variants of each at other
# prices. A variant's speed factor is log-normal around 1 (sigma VARIANT_SPEED_SIGMA) and its
# price scales with speed to a random power in VARIANT_PRICE_POWER, so some variants are
# better value than their parent and some worse: no single type dominates by construction.
VARIANT_SPEED_SIGMA = 0.45
VARIANT_PRICE_POWER = (0.6, 1.3)


def variant_scenario(
    model: str = "rm2",
    n_types: int = 8,
    *,
    seed: int = 0,
    qos_ms: float | None = None,
    speed_scale: float = 1.0,
) -> Scenario:
    """The model's measured types plus ``n_types - measured`` variants of them.

    Variant ``k`` of parent type ``P`` is named ``P~vk``; its service-time quantiles are the
    parent's divided by a speed factor, its price the parent's times that factor to a random
    power. ``speed_scale`` divides every type's service times (a faster or slower model on the
    same catalog). Deterministic in ``seed``.
    """
    profiles = default_profiles()
    real = profiles.model(model)
    base_prices = default_prices()
    parents = [t for t in real.instance_types if t in base_prices.prices_per_hr]
    if n_types < len(parents) or not speed_scale > 0:
        raise ConfigError(
            f"n_types {n_types!r} / speed_scale {speed_scale!r} is out of range.",
            f"ask for at least {len(parents)} types (the measured ones) and a positive scale.",
        )
    rng = np.random.default_rng(seed)
    by_type: dict[str, LatencyProfile] = {}
    prices: dict[str, float] = {}
    for t in parents:
        prof = real.get(t)
        by_type[t] = LatencyProfile(model, t, prof.batch_sizes, prof.quantiles_ms / speed_scale)
        prices[t] = base_prices.price_per_hr(t)
    for k in range(n_types - len(parents)):
        parent = parents[k % len(parents)]
        name = f"{parent}~v{k // len(parents) + 1}"
        speed = float(rng.lognormal(0.0, VARIANT_SPEED_SIGMA))
        power = float(rng.uniform(*VARIANT_PRICE_POWER))
        prof = real.get(parent)
        quantiles = prof.quantiles_ms / (speed * speed_scale)
        by_type[name] = LatencyProfile(model, name, prof.batch_sizes, quantiles)
        prices[name] = round(prices[parent] * speed**power, 4)
    base = Scenario.build(model, qos_ms=qos_ms, profiles=profiles)
    return Scenario(
        model=model,
        qos_ms=base.qos_ms,
        profiles=ModelProfiles(model, by_type),
        prices=PriceTable(prices, f"variant catalog (seed {seed})"),
        mix=base.mix,
    )


def write_catalog(scenario: Scenario, profiles_path: str, prices_path: str) -> None:
    """Write a scenario's profiles and prices as the CSV files ``--profiles``/``--prices`` read.

    Each (type, batch) cell is written as its quantile rows, which load back exactly.
    """
    with open(profiles_path, "w", encoding="utf-8") as out:
        out.write("model,instance_type,batch_size,latency_ms\n")
        for t in scenario.instance_types:
            prof = scenario.profiles.get(t)
            for b, row in zip(prof.batch_sizes.tolist(), prof.quantiles_ms, strict=True):
                for v in row.tolist():
                    out.write(f"{scenario.model},{t},{int(b)},{v!r}\n")
    with open(prices_path, "w", encoding="utf-8") as out:
        out.write("instance_type,price_per_hr\n")
        for t in scenario.instance_types:
            out.write(f"{t},{scenario.prices.price_per_hr(t)!r}\n")
