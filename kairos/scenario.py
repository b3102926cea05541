"""A scenario: what is being served (model, QoS, query mix) and the data it is judged on."""

from __future__ import annotations

from dataclasses import dataclass

from kairos.catalog import (
    Pool,
    PriceTable,
    check_qos_ms,
    default_prices,
    default_qos_ms,
    load_prices,
)
from kairos.profiles import ModelProfiles, ProfileSet, default_profiles, load_profiles
from kairos.workload import BatchMix, check_batches_within, production_mix

# The QoS target is a p99: at least this share of queries must finish within ``qos_ms``.
# Declared once here, next to the scenario it qualifies; the simulator, the bounds, the
# planner, the live load generator and the plots all read it.
QOS_QUANTILE = 0.99
MISS_BUDGET = 1.0 - QOS_QUANTILE  # share of queries allowed to miss QoS


@dataclass(frozen=True, eq=False)
class Scenario:
    """Model profiles, prices, p99 QoS target and batch-size mix of one serving problem.

    The target is met when a share of at least ``QOS_QUANTILE`` of queries finishes within
    ``qos_ms``.
    """

    model: str
    qos_ms: float
    profiles: ModelProfiles
    prices: PriceTable
    mix: BatchMix

    @classmethod
    def build(
        cls,
        model: str,
        *,
        qos_ms: float | None = None,
        profiles: ProfileSet | None = None,
        prices: PriceTable | None = None,
        mix: BatchMix | None = None,
    ) -> Scenario:
        """Fill in the built-in data and the model's default QoS where not given.

        A mix with batches above the profiled grid is refused (``check_batches_within``).
        """
        ps = profiles if profiles is not None else default_profiles()
        mp = ps.model(model)
        qos = check_qos_ms(qos_ms) if qos_ms is not None else default_qos_ms(model)
        batch_mix = mix if mix is not None else production_mix()
        check_batches_within(
            batch_mix.max_batch, f"batch mix {batch_mix.name!r}", mp.max_batch, f"model {model!r}"
        )
        return cls(
            model=model,
            qos_ms=qos,
            profiles=mp,
            prices=prices if prices is not None else default_prices(),
            mix=batch_mix,
        )

    @classmethod
    def from_files(
        cls,
        model: str,
        *,
        qos_ms: float | None = None,
        profiles_path: str | None = None,
        prices_path: str | None = None,
        mix: BatchMix | None = None,
    ) -> Scenario:
        """``build`` with the profiles and prices read from CSV files where paths are given."""
        return cls.build(
            model,
            qos_ms=qos_ms,
            profiles=load_profiles(profiles_path) if profiles_path else None,
            prices=load_prices(prices_path) if prices_path else None,
            mix=mix,
        )

    def check_pool(self, pool: Pool) -> Pool:
        """``pool``, once every type in it has a profile and a price (else the data's error,
        naming the type)."""
        for t in pool.types:
            self.profiles.get(t)
            self.prices.price_per_hr(t)
        return pool

    @property
    def instance_types(self) -> tuple[str, ...]:
        """Types that have both a profile and a price."""
        priced = set(self.prices.instance_types)
        return tuple(t for t in self.profiles.instance_types if t in priced)
