"""Registry: one unknown-name error everywhere, and entries named by a dotted path that are
imported only when picked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kairos.errors import ConfigError
from kairos.registry import Registry


def test_unknown_name_lists_the_known_ones_with_the_fix() -> None:
    reg: Registry[int] = Registry("thing", "pass --thing one.")
    reg.add("one", 1)
    reg.add_path("two", "json:dumps")
    with pytest.raises(ConfigError, match=r"thing 'three' is not known \(known: one, two\)"):
        reg.check("three")


def test_a_dotted_path_entry_is_known_at_once_and_imported_on_first_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kairos_registry_probe.py").write_text("VALUE = object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("thing", "pass --thing one.")
    reg.add_path("probe", "kairos_registry_probe:VALUE")
    assert reg.names() == ("probe",) and "probe" in reg and reg.check("probe") == "probe"
    assert "kairos_registry_probe" not in sys.modules  # naming and checking import nothing
    loaded = reg.get("probe")
    probe = sys.modules.pop("kairos_registry_probe")
    assert loaded is probe.VALUE and reg.get("probe") is loaded  # loaded once


def test_a_path_registered_twice_is_one_entry_and_a_clash_is_refused() -> None:
    reg: Registry[object] = Registry("thing", "pass --thing one.")
    reg.add_path("x", "json:dumps")
    reg.add_path("x", "json:dumps")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.add_path("x", "json:loads")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.add("x", object())
    with pytest.raises(ConfigError, match="not a dotted path"):
        reg.add_path("y", "json.dumps")


def test_backends_above_their_registry_are_not_imported_until_picked() -> None:
    # The router's config names and checks the Ray pool, and the simulator its Ray executor,
    # without importing either (nothing imports a module just so that it registers).
    code = """
import sys
from kairos.serving.router.config import RouterConfig
from kairos.serving.pool.base import POOL_BACKENDS
from kairos.sim.parallel import BACKENDS
assert POOL_BACKENDS.names() == ("local", "ray") and BACKENDS.names() == ("local", "ray")
POOL_BACKENDS.check("ray"); BACKENDS.check("ray")
assert "kairos.serving.ray.pool" not in sys.modules, "config imported the Ray pool"
assert "kairos.serving.ray.jobs" not in sys.modules, "the Ray executor was imported"
from kairos.serving.ray.jobs import RayExecutor
from kairos.serving.ray.pool import RayPool
assert BACKENDS.get("ray") is RayExecutor and POOL_BACKENDS.get("ray") is RayPool
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
