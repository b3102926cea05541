"""The top pools by the KAIROS bound for catalogs too large to enumerate (work in progress)."""

from __future__ import annotations

from collections.abc import Mapping

from kairos.allocator.result import RankedPool
from kairos.errors import ConfigError
from kairos.scenario import Scenario


def kairos_top(
    scenario: Scenario, budget_per_hr: float, k: int, caps: Mapping[str, int] | None = None
) -> list[RankedPool]:
    raise ConfigError(
        f"budget ${budget_per_hr:g}/h admits too many pools to enumerate.",
        "use --bound fluid (the MILP) or cap types with --max TYPE=N.",
    )
