"""The fluid bounds of one mix's pools, each pool's LP solved at most once, most never.

Asked which pools of a listing reach a rate (the target-rate planner's question, and the
autoscaler's ladder asking it for rung after rung), the answer needs the exact bound only of
the pools that may reach it. Weak duality gives every pool a valid upper bound from any dual
prices for the cost of a dot product (``dual_bounds``): the catalog's own prices first, then
the duals of the LPs solved so far. A pool whose cheap bound is below the rate cannot reach it
and its LP is not solved; the others are solved once and kept. The pools reported, and their
values, are those that solving every LP would give (``DUAL_SLACK`` keeps a pool at the edge).
"""

from __future__ import annotations

import numpy as np

from kairos.allocator.fluid import dual_bounds, fluid_lp, fluid_tables
from kairos.allocator.pools import catalog_types
from kairos.scenario import Scenario

# A dual bound rules a pool out only this far below the rate: far above the LP solver's
# tolerance, so a pool whose exact bound reaches the rate is never ruled out.
DUAL_SLACK = 1e-6
# Dual prices kept for cheap bounds: those of the pools with the highest fluid bound so far.
MAX_DUALS = 8


class FluidCache:
    """The fluid bounds of ``scenario``'s pools (rows of counts over ``catalog_types``)."""

    def __init__(self, scenario: Scenario) -> None:
        self.types = catalog_types(scenario)
        self.tab = fluid_tables(scenario, self.types)
        prices = np.array([scenario.prices.price_per_hr(t) for t in self.types])
        self._duals: list[tuple[float, np.ndarray, float]] = [(0.0, prices, 0.0)]
        self._exact: dict[bytes, float] = {}
        self.lps = 0

    def exact(self, counts: np.ndarray) -> float:
        """The fluid bound of one pool (``counts`` over ``types``)."""
        key = np.asarray(counts, dtype=np.int64).tobytes()
        value = self._exact.get(key)
        if value is None:
            value, u, mu = fluid_lp(self.tab, counts)
            self.lps += 1
            self._exact[key] = value
            if u.any() and len(self._duals) < MAX_DUALS + 1:
                self._duals.append((value, u, mu))
            elif u.any() and value > min(v for v, _, _ in self._duals[1:]):
                worst = min(range(1, len(self._duals)), key=lambda i: self._duals[i][0])
                self._duals[worst] = (value, u, mu)
        return value

    def reaching(self, counts: np.ndarray, rate_qps: float) -> np.ndarray:
        """Each row's fluid bound where it may reach ``rate_qps``; 0 where a cheap bound
        shows it cannot."""
        cheap = np.full(len(counts), np.inf)
        for _, u, mu in self._duals:
            cheap = np.minimum(cheap, dual_bounds(self.tab, counts, u, mu))
        out = np.zeros(len(counts))
        for i in np.flatnonzero(cheap >= rate_qps * (1 - DUAL_SLACK)).tolist():
            out[i] = self.exact(counts[i])
        return out
