"""One cell's running state, and its planned capacity (what its balancer weight follows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    port: int = 0  # 0 until its router first listens; a local router keeps it across restarts
    host: str = "127.0.0.1"  # its router's address (a Ray router's node's)
    # The router as its host (hosts.py) holds it: a local process, or a Ray actor's handle.
    router: Any = None
    pid: int | None = None
    node: str | None = None  # a Ray router's node id
    ready: bool = False
    removing: bool = False
    restarts: int = 0
    back_s: list[float] = field(default_factory=list)  # per restart: exit -> ready again
    weight: int = 1

    @property
    def name(self) -> str:
        return f"cell{self.index}"

    @property
    def url(self) -> str:
        """Its router's base URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
