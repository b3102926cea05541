"""The fluid cache answers "which pools reach this rate" exactly as one LP per pool would."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.allocator.fluid import fluid_bounds
from kairos.allocator.fluid_cache import FluidCache
from kairos.allocator.pools import pool_matrix
from kairos.scenario import Scenario


@pytest.mark.parametrize("model", ["rm2"])
def test_reaching_is_the_exact_bound_where_it_reaches_and_zero_where_not(model: str) -> None:
    scenario = Scenario.build(model)
    pools = pool_matrix(scenario, 1.6, None)
    exact = fluid_bounds(scenario, pools.types, pools.counts)
    cache = FluidCache(scenario)
    # Rates at which some pools reach and most do not, the cache's case; asked in turn, as the
    # autoscaler's ladder asks it rung after rung.
    for share in (0.9, 0.5, 0.7):
        rate = share * float(exact.max())
        got = cache.reaching(pools.counts, rate)
        reach = exact >= rate * (1 - 1e-9)
        assert reach.any() and not reach.all()
        np.testing.assert_allclose(got[reach], exact[reach], rtol=1e-9)
        assert not got[~reach].any() or (got[~reach] < rate).all()
    # Its LPs: each pool solved at most once across the three rates; a question asked again
    # solves none.
    assert 0 < cache.lps <= len(pools)
    lps = cache.lps
    cache.reaching(pools.counts, 0.5 * float(exact.max()))
    assert cache.lps == lps
    assert cache.exact(pools.counts[0]) == pytest.approx(float(exact[0]), rel=1e-9)
