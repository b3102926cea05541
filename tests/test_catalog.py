from __future__ import annotations

from pathlib import Path

import pytest

import kairos.data
from kairos.catalog import Pool, default_prices, default_qos_ms, load_prices
from kairos.errors import ConfigError, PoolError, PriceError, UnknownInstanceTypeError


def test_pool_parse_and_cost():
    pool = Pool.parse("g4dn.xlarge=2, r5n.large=9")
    assert pool.counts == (("g4dn.xlarge", 2), ("r5n.large", 9))
    assert pool.size == 11
    assert str(pool) == "g4dn.xlarge=2,r5n.large=9"
    assert pool.cost_per_hr(default_prices()) == pytest.approx(2 * 0.526 + 9 * 0.149)
    assert pool.instance_types()[:3] == ("g4dn.xlarge", "g4dn.xlarge", "r5n.large")


def test_pool_zero_counts_are_dropped():
    assert Pool.parse("a=0,b=2").counts == (("b", 2),)


@pytest.mark.parametrize("text", ["a=-1", "a=x", "a", "=3", "", "a=0", "b=2,b=1", "a=600,b=401"])
def test_pool_bad_specs(text):
    with pytest.raises(PoolError) as err:
        Pool.parse(text)
    assert "To fix:" in str(err.value)


def test_prices():
    prices = default_prices()
    assert prices.price_per_hr("g4dn.xlarge") == pytest.approx(0.526)
    assert len(prices.instance_types) == 16
    with pytest.raises(UnknownInstanceTypeError, match="p3.2xlarge"):
        prices.price_per_hr("p3.2xlarge")


def test_default_prices_are_the_file_and_each_call_owns_its_table():
    # default_prices reads the file once per process; each call still equals a fresh read.
    first = default_prices()
    read = load_prices(Path(kairos.data.__file__).parent / "aws_prices.csv")
    assert dict(first.prices_per_hr) == dict(read.prices_per_hr)
    assert list(first.prices_per_hr) == list(read.prices_per_hr)
    assert first.source == "built-in AWS prices"
    assert first.prices_per_hr is not default_prices().prices_per_hr


@pytest.mark.parametrize(
    "text", ["instance_type,price_per_hr\na,-1\n", "instance_type,price_per_hr\na,x\n", "a,b\n"]
)
def test_bad_price_files(write, text):
    with pytest.raises(PriceError):
        load_prices(write("prices.csv", text))


def test_default_qos():
    assert default_qos_ms("rm2") == 350 and default_qos_ms("ncf") == 5
    with pytest.raises(ConfigError, match="--qos-ms"):
        default_qos_ms("bert")
