import pytest

from kairos.allocator import kairos_bound, plan
from kairos.catalog import Pool
from kairos.scenario import Scenario

from .conftest import PAPER_CAPS

# The paper's Table: best pool under $2.5/h and its bound (qps) for each model.
PAPER_TOP = {
    "rm2": ("g4dn.xlarge=1,r5n.large=13", 144.0),
    "wnd": ("g4dn.xlarge=1,r5n.large=13", 1556.0),
    "ncf": ("g4dn.xlarge=1,r5n.large=13", 7181.0),
    "mtwnd": ("g4dn.xlarge=2,r5n.large=9", 1061.0),
    "dien": ("g4dn.xlarge=2,r5n.large=9", 733.0),
}


@pytest.mark.parametrize("model", sorted(PAPER_TOP))
def test_paper_setting_ranks_the_papers_pool_first(model):
    scenario = Scenario.build(model)
    result = plan(scenario, 2.5, caps=PAPER_CAPS, top=5, verify_top=0)
    expected_pool, expected_qps = PAPER_TOP[model]
    assert str(result.pool) == expected_pool
    # Our profiles are 21 quantiles of the paper's raw samples, so allow a couple of percent.
    assert result.upper_bound_qps == pytest.approx(expected_qps, rel=0.025)
    bounds = [r.upper_bound_qps for r in result.ranked]
    assert bounds == sorted(bounds, reverse=True)
    assert result.ranked[1].upper_bound_qps < result.upper_bound_qps


def test_two_cases_and_base_only_by_hand(toy):
    # Q_G = 1000/15, v_K = 10, s = 0.5, tau = 1/3, Q_K(10) = 50, Q_L = Q_G * 0.5 / (2/3) = 50.
    assert kairos_bound(toy, Pool.of({"G": 3})) == pytest.approx(200.0)
    # C = 50, lambda_max = 100, lambda_max (1-s) = 50 >= n_G Q_L = 50: base-bound case.
    assert kairos_bound(toy, Pool.of({"G": 1, "K": 1})) == pytest.approx(100.0)
    assert kairos_bound(toy, Pool.of({"G": 1, "K": 2})) == pytest.approx(100.0)
    # n_G = 2: u = 50 / 100, bound = 100 + 2 * (1000/15) * 0.5.
    assert kairos_bound(toy, Pool.of({"G": 2, "K": 1})) == pytest.approx(100 + 1000 / 15)


def test_type_that_serves_every_query_uses_the_s_equals_one_limit(toy):
    q_f = 1000 / 27.5  # F over the whole mix
    assert kairos_bound(toy, Pool.of({"G": 1, "F": 1})) == pytest.approx(q_f + 1000 / 15)


def test_pool_without_the_catalog_base_uses_its_own_fastest_type(toy):
    assert kairos_bound(toy, Pool.of({"F": 2})) == pytest.approx(2 * 1000 / 27.5)
    # F is the pool's base; K still serves the small half.
    assert kairos_bound(toy, Pool.of({"F": 1, "K": 1})) > kairos_bound(toy, Pool.of({"F": 1}))


def test_pool_that_cannot_meet_qos_has_bound_zero(toy):
    # K cannot serve the large half within QoS at all.
    assert kairos_bound(toy, Pool.of({"K": 4})) == 0.0


def test_unknown_type_in_pool_is_an_error(toy):
    from kairos.errors import UnknownInstanceTypeError

    with pytest.raises(UnknownInstanceTypeError, match="nope"):
        kairos_bound(toy, Pool.of({"nope": 1}))
