"""The planning pipeline's verification with screening (``plan(..., screen=N)``)."""

from __future__ import annotations

from kairos.allocator import plan
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement, Measurer

SIM = Measurement(queries=300, precision=0.1, seed=0)


def test_screened_verification_picks_the_same_pool():
    # Only the first pool is searched in full; the others get one trial one precision step
    # below its rate and are searched only if they pass: the same pick and figure, the same
    # pools simulated, fewer searches.
    scenario = Scenario.build("mtwnd")
    full_measurer, screened_measurer = Measurer(), Measurer()
    full = plan(scenario, 2.5, top=1, measurement=SIM, measurer=full_measurer)
    res = plan(scenario, 2.5, top=1, measurement=SIM, measurer=screened_measurer, screen=1)
    assert (res.pool, res.allowable_qps, res.explorations) == (
        full.pool,
        full.allowable_qps,
        full.explorations,
    )
    by_pool = {r.pool: r.allowable_qps for r in full.ranked}
    assert all(r.allowable_qps in (0.0, by_pool[r.pool]) for r in res.ranked)
    assert sum(r.allowable_qps == 0.0 for r in res.ranked) >= 1  # the screen cut something
