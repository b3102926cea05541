"""Local instance types: the cgroup v1 and v2 writers on a fake tree, the fallback, and a
real CPU cap where this host allows one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kairos.errors import ConfigError
from kairos.serving.worker import cpushare
from kairos.serving.worker.cpushare import LOCAL_TYPES, confine, local_type

QUARTER = LOCAL_TYPES.get("local.quarter")


def fake_tree(root: Path, mounts: str, cgroup: str) -> None:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mounts").write_text(mounts)
    (root / "proc/self/cgroup").write_text(cgroup)


def test_cgroup_v1_group_gets_the_quota_and_the_process(tmp_path: Path) -> None:
    fake_tree(
        tmp_path,
        "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n",
        "3:cpuset:/\n2:cpu,cpuacct:/user.slice\n0::/\n",
    )
    home = tmp_path / "sys/fs/cgroup/cpu,cpuacct/user.slice"
    home.mkdir(parents=True)
    stale = home / "kairos" / f"local.half-{2**22 + 7}"  # a pid that cannot be alive
    stale.mkdir(parents=True)
    done = confine(QUARTER, (1,), fs_root=tmp_path, pid=4242, pin=False)
    group = home / "kairos" / "local.quarter-4242"
    assert done.mechanism == "cgroup v1" and done.capped and done.cpus == (1,)
    quota = QUARTER.cpu_share * cpushare.PERIOD_US
    assert (group / "cpu.cfs_quota_us").read_text() == str(int(quota))
    assert (group / "cpu.cfs_period_us").read_text() == str(cpushare.PERIOD_US)
    assert (group / "cgroup.procs").read_text() == "4242"
    assert (home / "kairos" / "cpu.shares").read_text() == str(1024 * cpushare.WEIGHT_FACTOR)
    assert not stale.exists()
    assert "0.25 core(s) of CPU time on core(s) 1 (cgroup v1" in done.describe()


def test_cgroup_v2_group_goes_beside_the_process_and_enables_cpu(tmp_path: Path) -> None:
    fake_tree(tmp_path, "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", "0::/app/worker\n")
    base = tmp_path / "sys/fs/cgroup/app"
    (base / "worker").mkdir(parents=True)
    (base / "cgroup.subtree_control").write_text("memory\n")
    done = confine(QUARTER, (1,), fs_root=tmp_path, pid=77, pin=False)
    assert done.mechanism == "cgroup v2"
    assert (base / "cgroup.subtree_control").read_text() == "+cpu"
    group = base / "kairos-local.quarter-77"
    assert (group / "cpu.max").read_text() == f"{int(0.25 * cpushare.PERIOD_US)} " + str(
        cpushare.PERIOD_US
    )
    assert (group / "cgroup.procs").read_text() == "77"
    assert (group / "cpu.weight").read_text() == str(100 * cpushare.WEIGHT_FACTOR)


def test_without_a_writable_controller_it_falls_back_to_pinning_and_says_so(
    tmp_path: Path,
) -> None:
    fake_tree(tmp_path, "proc /proc proc rw 0 0\n", "0::/\n")
    done = confine(QUARTER, (0,), fs_root=tmp_path, pid=5, pin=False)
    assert not done.capped and done.mechanism == "none"
    text = done.describe()
    assert "no CPU share could be set" in text and "full core" in text and "cgroup v1" in text


def test_local_types_are_declared_by_name_and_checked() -> None:
    assert local_type("local.half").cpu_share == 0.5
    # One line: what is unknown, what is known, and how to fix it (the registry's form).
    with pytest.raises(
        ConfigError,
        match=r"local instance type 'local.huge' is not known \(known: local.full, local.half, "
        r"local.quarter\)\. To fix: pick one of the known local types",
    ):
        local_type("local.huge")
    with pytest.raises(ConfigError, match="runs on 1 core"):
        confine(QUARTER, (0, 1), pin=False)
    types = [LOCAL_TYPES.get(name) for name in LOCAL_TYPES.names()]
    shares = [t.cpu_share for t in types]
    prices = [t.price_per_hr for t in types]
    # Smaller types cost more per core, as small cloud instances do.
    per_core = [p / s for p, s in zip(prices, shares, strict=True)]
    assert per_core == sorted(per_core)


BURN = """
import os, time
from pathlib import Path
from kairos.serving.worker.cpushare import confine, local_type
done = confine(local_type("local.quarter"))
rows = [r.split(":", 2) for r in Path("/proc/self/cgroup").read_text().splitlines()]
(group,) = [path for _, names, path in rows if "cpu" in names.split(",")]
home = Path("/sys/fs/cgroup/cpu" + group)
quota = int((home / "cpu.cfs_quota_us").read_text()) / int((home / "cpu.cfs_period_us").read_text())
wall0, cpu0 = time.perf_counter(), time.process_time()
while time.perf_counter() - wall0 < 0.6:
    pass
share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
print(os.getpid(), quota, share, group, done.mechanism)
"""


def _can_write_cgroups() -> bool:
    v1 = Path("/sys/fs/cgroup/cpu")
    return os.geteuid() == 0 and v1.is_dir() and os.access(v1, os.W_OK)


@pytest.mark.skipif(not _can_write_cgroups(), reason="needs a writable cgroup v1 cpu controller")
def test_a_confined_process_is_held_to_its_share_of_a_core() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BURN], capture_output=True, text=True, timeout=60, check=True
    )
    pid, quota, share, group, mechanism = out.stdout.split(maxsplit=4)
    assert mechanism.strip() == "cgroup v1"
    # The process ran in a group of its own whose quota is a quarter of a core: exact, what
    # confine controls. How much of that quarter it got is up to the host (a busy machine
    # gives it less), so the measured share is held to the cap only, which noise cannot raise.
    assert group.endswith(f"/kairos/local.quarter-{pid}"), out.stdout
    assert float(quota) == pytest.approx(0.25), out.stdout
    assert 0 < float(share) < 0.35, out.stdout
    # The process left its group and removed it on the way out.
    assert not Path(f"/sys/fs/cgroup/cpu{group}").exists()
