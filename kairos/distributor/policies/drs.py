"""DeepRecSched-style size threshold: large queries to the accelerator type, small to the rest.

Queries with ``batch_size > threshold`` queue for the base type (the type fastest on the
largest batch, the GPU in the built-in data); the others queue for every other type; each
group is served first come, first served. The threshold is the one knob: ``threshold`` option,
else ``default_drs_threshold``; ``kairos.sim.tuning.tune_drs_threshold`` finds a
better one for a given pool by hill climbing on the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kairos.distributor.base import Decision, Policy, PolicyContext, register
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.profiles import ModelProfiles
from kairos.scenario import QOS_QUANTILE

BATCH_STEP = 10  # thresholds are searched on multiples of this (the mix's batch granularity)


def default_drs_threshold(
    profiles: ModelProfiles, instance_types: Sequence[str], qos_ms: float
) -> int:
    """The largest batch (multiple of 10) whose p99 service time meets QoS on every non-base
    type of the pool: the most work the small-query group can take without breaking QoS
    by itself. 0 (everything to the base type) when none fits; the profile's largest batch
    when the pool has only one of the two groups."""
    types = list(dict.fromkeys(instance_types))
    base = profiles.base_type(types)
    others = [t for t in types if t != base]
    top = profiles.max_batch
    if not others:
        return top
    grid = np.arange(BATCH_STEP, top + 1, BATCH_STEP)
    worst = np.max([profiles.get(t).quantile_ms(grid, QOS_QUANTILE) for t in others], axis=0)
    fits = grid[worst <= qos_ms]
    return int(fits.max()) if fits.size else 0


@register
class DRS(Policy):
    """Size threshold ``threshold`` (option; default ``default_drs_threshold``)."""

    name = "drs"

    def __init__(self, ctx: PolicyContext, *, threshold: int | None = None, **options: Any) -> None:
        super().__init__(ctx, **options)
        if threshold is None:
            threshold = default_drs_threshold(ctx.profiles, ctx.instance_types, ctx.qos_ms)
        if not isinstance(threshold, int | np.integer) or threshold < 0:
            raise ConfigError(
                f"drs threshold {threshold!r} is not a whole batch size >= 0.",
                "pass threshold such as 300 (queries above it go to the base type).",
            )
        self.threshold = int(threshold)
        base = ctx.profiles.base_type(ctx.type_names)
        self._is_base = [t == base for t in ctx.instance_types]
        # A pool with one group only serves everything there, whatever the threshold.
        self._split = any(self._is_base) and not all(self._is_base)

    def decide(self, state: ClusterState) -> list[Decision]:
        idle = state.idle
        if not idle or not state.queue:
            return []
        if not self._split:
            return list(zip(state.queue, sorted(idle), strict=False))
        big = sorted(j for j in idle if self._is_base[j])
        small = sorted(j for j in idle if not self._is_base[j])
        out: list[Decision] = []
        threshold = self.threshold
        for qid, query in state.queue.items():
            if not big and not small:
                break
            free = big if query.batch_size > threshold else small
            if free:
                out.append((qid, free.pop(0)))
        return out
