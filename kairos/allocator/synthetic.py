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
