"""The ranges in kairos.limits: what they accept, and that docs/limits.md states each one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kairos import limits
from kairos.errors import ConfigError
from kairos.limits import Range

RANGES = {name: v for name, v in vars(limits).items() if isinstance(v, Range)}
DOC = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text()


@pytest.mark.parametrize("name", sorted(RANGES))
def test_docs_state_every_range_as_the_code_has_it(name):
    assert RANGES[name].describe() in DOC, f"docs/limits.md lacks {RANGES[name].describe()!r}"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "is outside"),
        (1e6 + 1, "is outside"),
        (math.nan, "not a finite number"),
        (math.inf, "not a finite number"),
        ("5", "not a number"),
        (True, "not a number"),
    ],
)
def test_a_rate_outside_its_range_names_option_value_and_range(value, problem):
    with pytest.raises(ConfigError) as err:
        limits.RATE_QPS.check(value)
    text = str(err.value)
    assert text.startswith("--rate-qps ") and problem in text and "0 < x <= 1,000,000 qps" in text


def test_whole_numbers_and_bounds_are_inclusive_as_described():
    assert limits.PORT.check(0) == 0 and limits.PORT.check(65_535) == 65_535
    assert limits.QUERIES.problem(2.5) == "is not a whole number"
    assert limits.RATE_QPS.contains(1e6) and not limits.RATE_QPS.contains(0.0)
