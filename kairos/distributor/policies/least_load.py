"""SkyServe's instance-aware least load: queries per unit of the instance type's throughput."""

from __future__ import annotations

from typing import Any

import numpy as np

from kairos.distributor.base import PolicyContext, register
from kairos.distributor.reservations import ReservingPolicy
from kairos.distributor.state import ClusterState
from kairos.errors import ConfigError
from kairos.workload import Query

DEFAULT_REF_BATCH = 250  # about the mean of the production batch mix


@register
class LeastLoad(ReservingPolicy):
    """Each arriving query goes to the up instance with the least load after taking it:
    ``(in-flight + reserved + 1) / throughput(type)``, where a type's throughput is
    ``1 / mean service time`` at ``ref_batch`` (option, default 250). Ties: lowest index.

    Counting the new query (the ``+ 1``) makes an empty fast instance beat an empty slow one,
    the tie-break SkyServe's weighting intends.
    """

    name = "least-load"

    def __init__(
        self, ctx: PolicyContext, *, ref_batch: int = DEFAULT_REF_BATCH, **options: Any
    ) -> None:
        super().__init__(ctx, **options)
        if not isinstance(ref_batch, int) or ref_batch < 1:
            raise ConfigError(
                f"ref_batch {ref_batch!r} is not a positive whole batch size.",
                "pass ref_batch such as 250 (the batch whose speed ranks the types).",
            )
        type_s = ctx.est_ms(ref_batch) / 1000.0
        self._inst_s = type_s[self.inst_type]  # 1 / throughput of each instance

    def place(self, query: Query, state: ClusterState) -> int:
        load = (self.busy_mask(state) + self.reserved_count + 1) * self._inst_s
        load[~self.up_mask(state)] = np.inf
        return int(np.argmin(load))
