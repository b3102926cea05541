"""Shared fixtures: the built-in data (loaded once) and tiny hand-made profile files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos.catalog import PriceTable
from kairos.profiles import ProfileSet, default_profiles, profiles_from_samples
from kairos.scenario import Scenario
from kairos.workload import fixed_mix


@pytest.fixture(scope="session")
def builtin_profiles() -> ProfileSet:
    return default_profiles()


def constant_profiles(latency_ms: dict[str, float], model: str = "toy") -> ProfileSet:
    """Each type takes exactly ``latency_ms[type] * batch / 10`` ms at batch 10..1000."""
    samples = {(model, t, b): [ms * b / 10.0] for t, ms in latency_ms.items() for b in (10, 1000)}
    return profiles_from_samples(samples)


@pytest.fixture
def toy_scenario() -> Scenario:
    """One type 'fast' taking exactly 10 ms at batch 10, QoS 40 ms, fixed batch 10."""
    return Scenario.build(
        "toy",
        qos_ms=40.0,
        profiles=constant_profiles({"fast": 10.0}),
        prices=PriceTable({"fast": 1.0}),
        mix=fixed_mix(10),
    )


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


# The suite runs on every core (pytest-xdist, ``-n auto --dist loadgroup`` in pyproject.toml).
# Tests that share an expensive resource stay on one worker, so it is built once: the Ray
# cluster (with its network namespace), the loaded PyTorch models, a module's fixtures.
_GROUPS = {"tests/serving/ray/": "ray"}
_MODEL_FILES = {
    "tests/models/test_models.py",
    "tests/serving/worker/test_inference.py",
    "tests/serving/worker/test_model_serving.py",
}


# The longest groups start first (xdist hands out groups in collection order, as
# ``--no-loadscope-reorder`` in pyproject.toml keeps it, pytest-xdist >= 3.8; its default puts
# the groups with the most tests first), so no worker is left finishing a long group alone at
# the end. Longest first, as measured on 2 quiet cores (seconds of a worker's time).
_FIRST = (
    "ray",  # 122
    "tests/demos/test_real_loop.py",  # 31
    "tests/test_static.py",  # 22
    "tests/serving/pool/test_failures.py",  # 20
    "tests/allocator/test_target.py",  # 18
    "tests/serving/cells/test_cells.py",  # 18
    "tests/serving/router/test_openapi.py",  # 17
    "tests/test_compare.py",  # 17
    "tests/serving/test_conformance.py",  # 16
    "tests/control/test_replan.py",  # 15
    "tests/client/test_loadgen.py",  # 15
    "tests/control/test_live_serve.py",  # 10
)


def _group(item: pytest.Item) -> str:
    where = item.path.relative_to(Path(str(item.config.rootpath))).as_posix()
    if where in _MODEL_FILES:
        return "models"
    # Every other test stays with its module, whose module-scoped fixtures (a planned pool, a
    # live router) are then built once, not once per worker.
    return next((g for prefix, g in _GROUPS.items() if where.startswith(prefix)), where)


# The mark goes on each item as it is collected: xdist's own collection hook (on each worker)
# turns ``xdist_group`` marks into the ``@group`` suffix of the node id that ``--dist
# loadgroup`` schedules by, so the marks must be there before any collection hook runs. Put on
# later, they were ignored: a module's tests were split across workers and the Ray group
# started two clusters.
def pytest_itemcollected(item: pytest.Item) -> None:
    item.add_marker(pytest.mark.xdist_group(_group(item)))


# Last: after pytest-randomly's shuffle, which would otherwise undo the order.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {g: k for k, g in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(_FIRST)))
