"""The celled planner: candidates, the choice, the fluid bound of N cells, the cell count."""

from __future__ import annotations

import pytest

from kairos.allocator.cells import cell_candidates, cells_for_max_rate, plan_cells
from kairos.allocator.fluid import fluid_bound
from kairos.catalog import PriceTable
from kairos.errors import ConfigError
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurement
from kairos.workload import fixed_mix
from tests.conftest import constant_profiles


@pytest.fixture(scope="module")
def toy() -> Scenario:
    return Scenario.build(
        "toy",
        qos_ms=100,
        profiles=constant_profiles({"slow": 40.0, "fast": 10.0}),
        prices=PriceTable({"slow": 0.5, "fast": 1.0}),
        mix=fixed_mix(10),
    )


def test_candidates_repeat_cells_then_split_the_whole_pool(toy):
    offered = cell_candidates(toy, 4.0, 2, "fluid", 2)
    kinds = [k for k, _ in offered]
    assert kinds[:2] == ["repeat", "repeat"]
    for kind, cells in offered:
        assert len(cells) == 2
        if kind == "repeat":
            assert cells[0] == cells[1] and cells[0].cost_per_hr(toy.prices) <= 2.0
    assert len(set(offered)) == len(offered)


def test_plan_picks_the_best_cut_it_tried(toy):
    m = Measurement(queries=200, precision=0.05)
    plan = plan_cells(toy, 4.0, 2, verify_top=2, policy="fcfs", measurement=m)
    assert plan.chosen == plan.tried[0]
    assert plan.chosen.allowable_qps == plan.best_tried_qps > 0
    assert [c.allowable_qps for c in plan.tried] == sorted(
        (c.allowable_qps for c in plan.tried), reverse=True
    )
    for c in plan.tried:
        assert c.cost_per_hr <= 4.0 + 1e-9
        assert c.fluid_bound_qps == pytest.approx(sum(fluid_bound(toy, p) for p in c.cells))
    repeat = next(c for c in plan.tried if c.kind == "repeat")
    assert repeat.fluid_bound_qps == pytest.approx(2 * fluid_bound(toy, repeat.cells[0]))
    assert plan.as_dict()["cells"] == 2 and plan.as_dict()["pool"] == str(plan.chosen.pool)
    again = plan_cells(toy, 4.0, 2, verify_top=2, policy="fcfs", measurement=m)
    assert again == plan


def test_cells_for_max_rate(toy):
    # $4/h buys 4 fast instances (400 q/s); at most 150 q/s a cell: 3 cells of one fast
    # ($1.33/h each) carry 100 q/s in the fluid limit, 2 cells of two fast would carry 200.
    n = cells_for_max_rate(toy, 4.0, 150.0, "fluid")
    assert n == 3
    cell = cell_candidates(toy, 4.0, n, "fluid", 1)[0][1][0]
    assert fluid_bound(toy, cell) <= 150.0
    assert cells_for_max_rate(toy, 4.0, 1e6, "fluid") == 1


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda sc: plan_cells(sc, 4.0, 0), "cell count 0"),
        (lambda sc: plan_cells(sc, -1.0, 2), "budget -1.0"),
        (lambda sc: plan_cells(sc, 4.0, 2, verify_top=0), "--verify 0"),
        (lambda sc: cells_for_max_rate(sc, 4.0, 0.0), "--max-cell-qps 0.0"),
        (lambda sc: cells_for_max_rate(sc, 4.0, 1.0, max_cells=4), "no cell count up to 4"),
    ],
)
def test_bad_input_is_one_clear_error(toy, call, says):
    with pytest.raises(ConfigError, match=says) as info:
        call(toy)
    assert "To fix:" in str(info.value)
