"""One worker, as a value: ``WorkerSpec`` says what it serves and how, and ``argv`` is its
``kairos worker`` command line.

Every part that starts or runs a worker reads this one record: the local supervisor starts a
process from ``argv``, the profiler's probe does the same for the worker it measures, a Ray
actor runs the worker in a thread from the record itself, and ``kairos worker`` parses its
options into one (its defaults are this class's). So a field added here reaches the command
line, the process and the actor alike, and no caller spells the options by hand.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSpec:
    """One worker (one instance, or the first of a co-hosted group; see ``argv``).

    ``mode`` is ``replay`` (emulate the type from its profile) or ``model`` (run the model);
    a ``handler`` (``module:callable``) serves the user's own model instead. ``local_type``
    confines the process to a local instance type (``cpushare.resolve``: ``auto`` = the
    instance type when it is one and a model runs). ``threads``: a model's intra-op threads
    (None: the local type's, else the cores the process may use). ``parent_pid``: the worker
    exits when that process is gone (a supervised worker must not outlive its router).
    """

    instance_type: str
    model: str
    mode: str = "replay"
    handler: str | None = None
    time_scale: float = 1.0
    seed: int = 0
    profiles_path: str | None = None
    transport: str = "tcp"
    host: str = "127.0.0.1"
    port: int = 0
    cpus: tuple[int, ...] = ()
    local_type: str = "auto"
    threads: int | None = None
    parent_pid: int | None = None

    def argv(self, instances: int = 1) -> list[str]:
        """``python -m kairos.cli.worker ...`` for this worker; ``instances`` > 1 co-hosts that
        many replay instances in the one process (seeds ``seed``, ``seed + 1``, ...).

        ``python -m kairos.cli.worker``, not ``kairos worker``: that module imports only the
        worker's own code, so the process starts without loading the rest of the CLI.
        """
        args = [
            sys.executable,
            "-m",
            "kairos.cli.worker",
            "--instance-type",
            self.instance_type,
            "--model",
            self.model,
            "--mode",
            self.mode,
            "--time-scale",
            repr(self.time_scale),
            "--seed",
            str(self.seed),
            "--transport",
            self.transport,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--instances",
            str(instances),
            "--local-type",
            self.local_type,
        ]
        if self.handler:
            args += ["--handler", self.handler]
        if self.profiles_path:
            args += ["--profiles", self.profiles_path]
        if self.cpus:
            args += ["--cpus", ",".join(map(str, self.cpus))]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.parent_pid is not None:
            args += ["--parent-pid", str(self.parent_pid)]
        return args
