"""Reaching Ray: the one place that imports it (it is optional) and joins or starts a cluster.

Ray is the ``kairos[ray]`` extra. Every Ray-backed feature (the ``ray`` worker pool, the
detached router, ``ray_map``) goes through ``import_ray`` so that a missing install is one
clear line, and through ``connect`` so that joining a cluster, starting a local instance and
reusing a connection (inside a Ray actor, or a test that connected first) behave the same.

A local instance started here declares the given custom resources and labels on its one node,
keeps quiet (no dashboard, workers' output not copied to this process) and does not send
Ray's usage statistics: a library that starts Ray implicitly should not switch them on.

Ray starts its worker processes (every actor and task) at niceness 15, so they yield to
everything else on the node. A serving instance or router must not (on one machine its
replayed service times stretch under any other load; measured, a capacity search as Ray
tasks took twice the serial time on a busy machine). Ray reads ``RAY_worker_niceness``:
a local instance started here sets it to 0, the generated cluster config sets it in its
start commands, and ``normal_priority`` moves an actor back to 0 where it may (root or
CAP_SYS_NICE, as in most containers).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from types import ModuleType

from kairos.errors import ConfigError, RuntimeServiceError

NICENESS_VARIABLE = "RAY_worker_niceness"
RAY_FIX = "install the extra: python -m pip install 'kairos[ray]' (Ray 2.49 or later)."
MIN_RAY = (2, 49)
PROBE_TIMEOUT_S = 5.0


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("this needs Ray, which is not installed.", RAY_FIX) from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_RAY:
        raise ConfigError(f"Ray {ray.__version__} is older than 2.49 (label selectors).", RAY_FIX)
    return ray


def connect(
    address: str | None,
    namespace: str,
    *,
    resources: Mapping[str, float] | None = None,
    labels: Mapping[str, str] | None = None,
) -> bool:
    """Join the cluster at ``address`` (``HOST:PORT`` or ``auto``), or start a local instance
    with ``resources`` and ``labels`` when ``address`` is None. Returns True when this call
    started or joined Ray (the caller disconnects with ``ray.shutdown()``), False when the
    process was connected already (then nothing is changed)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"namespace": namespace, "log_to_driver": False, "logging_level": "warning"}
    try:
        if address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            os.environ.setdefault(NICENESS_VARIABLE, "0")
            ray.init(
                # "local": a new instance, even where ray.init() would join one it finds.
                address="local",
                resources=dict(resources or {}),
                labels=dict(labels or {}),
                include_dashboard=False,
                **quiet,
            )
        else:
            probe_address(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "start a local Ray instance" if address is None else f"join Ray at {address!r}"
        raise RuntimeServiceError(
            f"could not {where} ({str(exc).strip().splitlines()[0][:300]}).",
            "check --address ('ray status' on the head node shows HOST:6379; 'auto' on a node "
            "of the cluster), or leave it out to start a local instance.",
        ) from None
    return True


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once where nothing listens at ``HOST:PORT`` (``ray.init`` retries for
    minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except OSError as exc:
        raise RuntimeServiceError(
            f"nothing answers at the Ray address {address!r} ({exc.strerror or exc}).",
            "pass the head node's HOST:6379 ('ray status' on the head prints it), or auto on "
            "a node of the cluster.",
        ) from None


def error_line(exc: BaseException) -> str:
    """The last non-empty line of a Ray error (its cause, after Ray's traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def normal_priority() -> None:
    """Undo Ray's niceness 15 for this process where it is allowed (see above).

    Linux keeps a niceness per thread and Ray sets it on some of its threads, so every
    thread is reset (threads started later inherit their creator's)."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the process as a whole
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, 0)
