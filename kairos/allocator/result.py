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

    def as_dict(self) -> dict[str, Any]:
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

    ``pool`` is the chosen pool: the best simulated one when the plan was verified, else the
    bound's first pick (``bound_pick``). ``explorations`` counts pools simulated (offline);
    ``pools_considered`` counts pools enumerated (0 when a search or the MILP ranked the
    catalog without listing its pools).
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
    bound_pick: RankedPool | None = None  # the bound's first pick (before any simulation)
    ranking: str = "enumerated"  # how the ranking was found: enumerated, search or milp

    @classmethod
    def single(
        cls,
        scenario: Scenario,
        budget_per_hr: float,
        bound: str,
        entry: RankedPool,
        *,
        pools_considered: int,
        ranking: str = "enumerated",
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
            ranking=ranking,
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "budget_per_hr": self.budget_per_hr,
            "qos_ms": self.qos_ms,
            "bound": self.bound,
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "upper_bound_qps": self.upper_bound_qps,
            "ranked": [r.as_dict() for r in self.ranked],
            "pools_considered": self.pools_considered,
            "ranking": self.ranking,
        }
        if self.bound_pick is not None:
            out["bound_pick"] = self.bound_pick.as_dict()
        if self.allowable_qps is not None:
            out["allowable_qps"] = self.allowable_qps
            out["policy"] = self.policy
            out["explorations"] = self.explorations
        return out


@dataclass(frozen=True)
class Exploration:
    """One simulated pool, with the bound it was ranked by (0 when it had none)."""

    pool: Pool
    cost_per_hr: float
    allowable_qps: float
    upper_bound_qps: float = 0.0
    searched: bool = True  # False: screened out by one failing trial (allowable_qps is 0)


@dataclass(frozen=True)
class SearchResult:
    """Best pool a search found, and every pool it simulated on the way (in order).

    The exact oracle also reports how many pools the budget admits (``pools_within_budget``,
    approximate above a few million) and whether it proved its pool the best
    (``exact``; False when it stopped at its simulation cap).
    """

    method: str
    policy: str
    pool: Pool
    cost_per_hr: float
    allowable_qps: float
    explorations: int
    history: tuple[Exploration, ...]
    pools_within_budget: float | None = None
    exact: bool | None = None
    searched: int | None = None  # of the explorations, how many were searched in full

    @property
    def exploration_cost_per_hr(self) -> float:
        """Sum of the explored pools' hourly costs: dollars spent if each ran for an hour."""
        return float(sum(e.cost_per_hr for e in self.history))

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": self.method,
            "policy": self.policy,
            "pool": str(self.pool),
            "cost_per_hr": round(self.cost_per_hr, 6),
            "allowable_qps": self.allowable_qps,
            "explorations": self.explorations,
            "exploration_cost_per_hr": round(self.exploration_cost_per_hr, 6),
        }
        if self.pools_within_budget is not None:
            out["pools_within_budget"] = self.pools_within_budget
            out["exact"] = self.exact
            out["searched"] = self.searched
        return out
