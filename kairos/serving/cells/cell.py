"""One cell's running state, and its planned capacity (what its balancer weight follows)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kairos.catalog import Pool
from kairos.scenario import Scenario
from kairos.sim.cells import cell_capacities_qps, instance_rates_qps


def capacity_qps(scenario: Scenario, pool: Pool) -> float:
    """A cell's planned capacity: what its balancer weight is proportional to."""
    return cell_capacities_qps([pool.as_dict()], instance_rates_qps(scenario, pool.types))[0]


@dataclass(eq=False)
class Cell:
    """One cell's running state (the cell set changes it as its router comes and goes)."""

    index: int
    pool: Pool
    capacity_qps: float
    port: int = 0  # 0 until its router first listens; kept across restarts
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    removing: bool = False
    restarts: int = 0
    back_s: list[float] = field(default_factory=list)  # per restart: exit -> ready again
    weight: int = 1

    @property
    def name(self) -> str:
        return f"cell{self.index}"
