"""Splitting a pool into cells: exact splits by hand, invariants, and clear errors."""

from __future__ import annotations

import itertools

import pytest

from kairos.errors import ConfigError, PoolError
from kairos.sim.cells import (
    cell_capacities_qps,
    cell_weights,
    instance_rates_qps,
    integer_weights,
    split_pool,
)

RATES = {"gpu": 10.0, "cpu": 1.0, "mid": 4.0}


def test_split_by_hand():
    # Floors first (1 gpu, 2 cpu each), then the fastest remainder: the 2 extra gpus go to
    # cells 0 and 1, and the extra cpu to the lowest-capacity cell, 2.
    cells = split_pool({"gpu": 5, "cpu": 7}, 3, RATES)
    assert cells == ({"gpu": 2, "cpu": 2}, {"gpu": 2, "cpu": 2}, {"gpu": 1, "cpu": 3})
    assert cell_capacities_qps(cells, RATES) == (22.0, 22.0, 13.0)


def test_one_cell_is_the_pool_and_every_instance_a_cell():
    assert split_pool({"gpu": 2, "cpu": 3}, 1, RATES) == ({"gpu": 2, "cpu": 3},)
    cells = split_pool({"gpu": 2, "cpu": 3}, 5, RATES)
    assert cells == ({"gpu": 1}, {"gpu": 1}, {"cpu": 1}, {"cpu": 1}, {"cpu": 1})


def test_invariants_over_many_pools():
    for g, c, m in itertools.product((0, 1, 3, 8), (0, 2, 9), (0, 1, 5)):
        pool = {"gpu": g, "cpu": c, "mid": m}
        total = g + c + m
        for n in range(1, total + 1):
            cells = split_pool(pool, n, RATES)
            assert len(cells) == n
            assert all(sum(cell.values()) >= 1 for cell in cells)
            for t, count in pool.items():
                got = [cell.get(t, 0) for cell in cells]
                assert sum(got) == count
                assert max(got) - min(got) <= 1  # same mix of types, within one
            caps = cell_capacities_qps(cells, RATES)
            # No cell is more than one fastest instance above another.
            assert max(caps) - min(caps) <= max(RATES[t] for t in pool if pool[t]) + 1e-9


def test_deterministic_whatever_the_mapping_order():
    a = split_pool({"gpu": 3, "cpu": 5, "mid": 2}, 4, RATES)
    b = split_pool({"mid": 2, "cpu": 5, "gpu": 3}, 4, dict(reversed(list(RATES.items()))))
    assert [dict(sorted(c.items())) for c in a] == [dict(sorted(c.items())) for c in b]


def test_weights():
    cells = split_pool({"gpu": 5, "cpu": 7}, 3, RATES)
    w = cell_weights(cells, RATES)
    assert w == pytest.approx((22 / 57, 22 / 57, 13 / 57))
    assert integer_weights(w) == (256, 256, round(256 * 13 / 22))
    assert integer_weights((1.0, 1e-9)) == (256, 1)


def test_rates_from_a_scenario(toy_scenario):
    # 10 ms per query at batch 10: 100 queries per second.
    assert instance_rates_qps(toy_scenario, ["fast"]) == {"fast": pytest.approx(100.0)}


@pytest.mark.parametrize(
    ("pool", "cells", "rates", "error", "says"),
    [
        ({"gpu": 2}, 0, RATES, ConfigError, "cell count 0 is below 1"),
        ({"gpu": 2}, 3, RATES, ConfigError, "exceeds the pool's 2 instances"),
        ({"gpu": 2}, 1.5, RATES, ConfigError, "not a whole number"),
        ({"gpu": 2}, True, RATES, ConfigError, "not a whole number"),
        ({"gpu": -1}, 1, RATES, PoolError, "count -1"),
        ({"tpu": 2}, 1, RATES, ConfigError, "no per-instance rate for instance type 'tpu'"),
        ({"gpu": 2}, 1, {"gpu": 0.0}, ConfigError, "rate 0.0"),
        ({"gpu": 2}, 1, {"gpu": float("nan")}, ConfigError, "rate nan"),
    ],
)
def test_bad_input_is_one_clear_error(pool, cells, rates, error, says):
    with pytest.raises(error, match=says) as info:
        split_pool(pool, cells, rates)
    assert "To fix:" in str(info.value)
