"""Values the allocator returns: a ranked pool and a plan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kairos.catalog import Pool
from kairos.scenario import Scenario


@dataclass(frozen=True)
class RankedPool:
    """A candidate pool with its cost, its bound and (once simulated) its allowable rate."""

    pool: Pool
    cost_per_hr: float
    upper_bound_qps: float
    allowable_qps: float | None = None

    def verified(self, allowable_qps: float) -> RankedPool:
        return replace(self, allowable_qps=allowable_qps)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "upper_bound_qps": self.upper_bound_qps,
        }
        if self.allowable_qps is not None:
            out["allowable_qps"] = self.allowable_qps
        return out


@dataclass(frozen=True)
class Plan:
    """The chosen pool, how it was chosen, and the top of the ranking behind the choice.

    ``explorations`` counts pools simulated (0 unless verified); ``pools_considered`` counts
    pools whose bound was computed (0 when the MILP chose without enumerating).
    """

    model: str
    budget_per_hr: float
    qos_ms: float
    bound: str
    pool: Pool
    cost_per_hr: float
    upper_bound_qps: float
    ranked: tuple[RankedPool, ...]
    allowable_qps: float | None = None
    explorations: int = 0
    pools_considered: int = 0
    policy: str | None = None

    @classmethod
    def single(
        cls,
        scenario: Scenario,
        budget_per_hr: float,
        bound: str,
        entry: RankedPool,
        *,
        pools_considered: int,
    ) -> Plan:
        return cls(
            scenario.model,
            float(budget_per_hr),
            scenario.qos_ms,
            bound,
            entry.pool,
            entry.cost_per_hr,
            entry.upper_bound_qps,
            (entry,),
            pools_considered=pools_considered,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "budget_per_hr": self.budget_per_hr,
            "qos_ms": self.qos_ms,
            "bound": self.bound,
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "upper_bound_qps": self.upper_bound_qps,
            "ranked": [r.to_json() for r in self.ranked],
        }
        if self.allowable_qps is not None:
            out["allowable_qps"] = self.allowable_qps
            out["policy"] = self.policy
            out["explorations"] = self.explorations
        return out
