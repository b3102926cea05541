"""Local instance types: run a worker or a profiling run as a smaller machine on this host.

A local type is declared by name (``LOCAL_TYPES``): how much CPU time it gets (a share of
one core's time), how many cores it is pinned to, how many intra-op threads the model uses,
and a notional hourly price for planning. ``confine(local_type)`` applies it to the calling
process:

* pinning to ``cores`` cores (``sched_setaffinity``), by default the highest-numbered ones
  this process may use, so core 0 stays for the router and the load generator;
* a CPU share through the kernel's CFS bandwidth control: cgroup v1 (``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` in a group of its own under the cpu controller's mount) or cgroup v2
  (``cpu.max`` in a group of its own beside the process's cgroup);
* where neither can be written (no permission, no cpu controller), pinning and the thread
  count only, with a message saying the type then runs at a full core's speed.

Each confined process gets its own group (``kairos/<type>-<pid>``), so two instances of one
type never share a quota, and leaves it (and removes it) when it exits; groups left by
processes that were killed are removed by the next ``confine``. The CFS period is short
(``PERIOD_US``) so a throttled query waits milliseconds, not a 100 ms default period, for
its next slice. The groups also get ``WEIGHT_FACTOR`` times the default CFS weight, so the
share a type is capped at is also what it gets while other processes on the host are busy
(the cap keeps the rest for them): a cloud instance's vCPUs are not taken by a neighbour
either. See docs/models.md, "Local instance types".
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from kairos.errors import ConfigError
from kairos.registry import Registry

PERIOD_US = 5_000
GROUP_DIR = "kairos"
WEIGHT_FACTOR = 16  # x the default CFS weight (v1 cpu.shares 1024, v2 cpu.weight 100)


@dataclass(frozen=True)
class LocalType:
    name: str
    cpu_share: float  # cores' worth of CPU time per unit of wall time
    cores: int  # cores it is pinned to
    threads: int  # intra-op threads of the model
    price_per_hr: float  # notional, for planning: proportional to the share, small types dearer

    def __post_init__(self) -> None:
        if not 0 < self.cpu_share <= self.cores or self.threads < 1:
            raise ValueError(f"local type {self.name}: share, cores and threads disagree")


LOCAL_TYPES: Registry[LocalType] = Registry(
    "local instance type", "pick one of the known local types, or leave the option out."
)
for _t in (
    LocalType("local.full", 1.0, 1, 1, 0.100),
    LocalType("local.half", 0.5, 1, 1, 0.055),
    LocalType("local.quarter", 0.25, 1, 1, 0.030),
):
    LOCAL_TYPES.add(_t.name, _t)


def local_type(name: str) -> LocalType:
    return LOCAL_TYPES.get(name)


def is_local_type(name: str) -> bool:
    return name in LOCAL_TYPES


def resolve(option: str, instance_type: str, runs_model: bool) -> LocalType | None:
    """``--local-type``: a name, ``none``, or ``auto`` (the instance type, if it is a local
    type and a model runs: a replayed profile only sleeps and needs no CPU cap)."""
    if option == "none":
        return None
    if option == "auto":
        return (
            LOCAL_TYPES.get(instance_type) if runs_model and instance_type in LOCAL_TYPES else None
        )
    return local_type(option)


@dataclass(frozen=True)
class Confinement:
    """What ``confine`` did: the cores, the CPU-share mechanism (or why there is none)."""

    local_type: LocalType
    cpus: tuple[int, ...]
    mechanism: str  # "cgroup v1", "cgroup v2" or "none"
    detail: str  # the group's path, or why no share could be set

    @property
    def capped(self) -> bool:
        return self.mechanism != "none"

    def describe(self) -> str:
        t = self.local_type
        cores = ",".join(map(str, self.cpus))
        if self.capped:
            return (
                f"running as {t.name}: {t.cpu_share:g} core(s) of CPU time on core(s) {cores} "
                f"({self.mechanism}, {self.detail}), {t.threads} thread(s)"
            )
        return (
            f"running as {t.name} with pinning to core(s) {cores} and {t.threads} thread(s) "
            f"only: no CPU share could be set ({self.detail}), so it runs at the speed of "
            f"{len(self.cpus)} full core(s). To cap it, run as root on a host with the cgroup "
            "cpu controller (v1 or v2) writable."
        )


def default_cpus(t: LocalType) -> tuple[int, ...]:
    """The ``t.cores`` highest-numbered cores this process may run on."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    if t.cores > len(allowed):
        raise ConfigError(
            f"local type {t.name} needs {t.cores} cores; this process may use {len(allowed)}.",
            "pick a smaller local type, or run where more cores are available.",
        )
    return tuple(allowed[-t.cores :])


def confine(
    t: LocalType,
    cpus: tuple[int, ...] = (),
    *,
    fs_root: Path = Path("/"),
    pid: int | None = None,
    pin: bool = True,
) -> Confinement:
    """Pin this process and cap its CPU time as ``t``; returns what was done.

    ``fs_root``, ``pid`` and ``pin`` exist for tests (a fake /proc and /sys tree).
    """
    cores = pin_cores(t, cpus) if pin else checked_cores(t, cpus)
    return cap(t, cores, fs_root=fs_root, pid=pid)


def checked_cores(t: LocalType, cpus: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The cores ``t`` runs on: ``cpus`` if given (exactly ``t.cores`` of them), else the last."""
    cores = cpus or default_cpus(t)
    if len(cores) != t.cores:
        raise ConfigError(
            f"local type {t.name} runs on {t.cores} core(s) but {len(cores)} were given "
            f"({','.join(map(str, cores))}).",
            f"give {t.cores} core(s), or leave the cores out to use the last ones.",
        )
    return tuple(cores)


def pin_cores(t: LocalType, cpus: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Pin this process to ``t``'s cores (before any thread starts: threads inherit it)."""
    from kairos.aio import pin_to_cpus

    cores = checked_cores(t, cpus)
    pin_to_cpus(cores)
    return cores


def cap(
    t: LocalType, cores: tuple[int, ...], *, fs_root: Path = Path("/"), pid: int | None = None
) -> Confinement:
    """Cap the process's CPU time at ``t``'s share (every thread: the group takes the whole
    process), by the first cgroup version that can be written."""
    pid = os.getpid() if pid is None else pid
    quota_us = max(1000, math.floor(t.cpu_share * PERIOD_US))
    reasons = []
    for mechanism, setter in (("cgroup v1", _cgroup_v1), ("cgroup v2", _cgroup_v2)):
        try:
            detail = setter(fs_root, f"{t.name}-{pid}", pid, quota_us)
        except OSError as exc:
            reasons.append(f"{mechanism}: {exc.strerror or exc}")
            continue
        return Confinement(t, cores, mechanism, detail)
    return Confinement(t, cores, "none", "; ".join(reasons))


def _mounts(fs_root: Path) -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup mount."""
    text = (fs_root / "proc/self/mounts").read_text()
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def _own_path(fs_root: Path, controller: str | None) -> str:
    """This process's cgroup path in the hierarchy holding ``controller`` (None = v2)."""
    for line in (fs_root / "proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if (controller is None and not controllers) or controller in names:
            return path
    raise FileNotFoundError(2, f"no {controller or 'unified'} entry in /proc/self/cgroup")


def _under(fs_root: Path, mount: str, path: str) -> Path:
    return fs_root / mount.lstrip("/") / path.lstrip("/")


def _cgroup_v1(fs_root: Path, group: str, pid: int, quota_us: int) -> str:
    mount = next(
        (m for m, kind, opts in _mounts(fs_root) if kind == "cgroup" and "cpu" in opts), None
    )
    if mount is None:
        raise FileNotFoundError(2, "no cgroup v1 cpu controller is mounted")
    home = _under(fs_root, mount, _own_path(fs_root, "cpu"))
    parent = home / GROUP_DIR
    parent.mkdir(exist_ok=True)
    (parent / "cpu.shares").write_text(str(1024 * WEIGHT_FACTOR))  # the weight among its peers
    _remove_stale(parent)
    target = parent / group
    target.mkdir(exist_ok=True)
    (target / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (target / "cpu.cfs_quota_us").write_text(str(quota_us))
    _join(target, home, pid)
    return f"cpu.cfs_quota_us {quota_us} per {PERIOD_US} us, weight x{WEIGHT_FACTOR}, in {target}"


def _cgroup_v2(fs_root: Path, group: str, pid: int, quota_us: int) -> str:
    mount = next((m for m, kind, _ in _mounts(fs_root) if kind == "cgroup2"), None)
    if mount is None:
        raise FileNotFoundError(2, "no cgroup v2 hierarchy is mounted")
    own = _own_path(fs_root, None)
    home = _under(fs_root, mount, own)
    # A cgroup holding processes cannot give its children controllers (v2's "no internal
    # processes" rule), so the group goes beside this process's cgroup (or under the root).
    base = home if own in ("", "/") else home.parent
    if "cpu" not in (base / "cgroup.subtree_control").read_text().split():
        (base / "cgroup.subtree_control").write_text("+cpu")
    _remove_stale(base, prefix=f"{GROUP_DIR}-")
    target = base / f"{GROUP_DIR}-{group}"
    target.mkdir(exist_ok=True)
    (target / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
    (target / "cpu.weight").write_text(str(100 * WEIGHT_FACTOR))
    _join(target, home, pid)
    return f"cpu.max {quota_us} {PERIOD_US}, weight x{WEIGHT_FACTOR}, in {target}"


def _join(target: Path, home: Path, pid: int) -> None:
    """Move ``pid`` into ``target``; at exit move it back and remove the group."""
    (target / "cgroup.procs").write_text(str(pid))

    def leave() -> None:
        with contextlib.suppress(OSError):
            (home / "cgroup.procs").write_text(str(pid))
            target.rmdir()

    if pid == os.getpid():
        atexit.register(leave)


def _remove_stale(parent: Path, prefix: str = "") -> None:
    """Remove groups whose process is gone (killed before it could remove its own)."""
    for child in parent.glob(f"{prefix}*-*"):
        owner = child.name.rsplit("-", 1)[1]
        if child.is_dir() and owner.isdigit() and not _alive(int(owner)):
            with contextlib.suppress(OSError):
                child.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
