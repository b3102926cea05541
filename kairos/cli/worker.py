"""``kairos worker``: serve one instance (or several co-hosted replay instances) to a router.

Also run as ``python -m kairos.cli.worker`` by the local supervisor: this module imports only
the worker's own code, so a worker process starts without loading the rest of the CLI.
"""

from __future__ import annotations

import click

from kairos import limits
from kairos.aio import parse_cpus
from kairos.cli.common import HOST, bounded
from kairos.cli.entry import run_command
from kairos.serving.pool.transport import TRANSPORTS
from kairos.serving.worker.launch import WorkerSpec
from kairos.serving.worker.service import WORKER_MODES, run_worker

_DEFAULTS = WorkerSpec("", "")


@click.command("worker")
@click.option("--instance-type", required=True, help="The instance type this worker is.")
@click.option("--model", "-m", required=True, help="Model name in the profiles.")
@click.option("--host", type=HOST, default=_DEFAULTS.host, show_default=True)
@click.option(
    "--port", type=bounded(limits.PORT), default=_DEFAULTS.port, show_default=True, help="0 = any."
)
@click.option(
    "--mode",
    type=click.Choice(WORKER_MODES.names()),
    default=_DEFAULTS.mode,
    show_default=True,
    help="replay: emulate the type from its profile; model: run the model.",
)
@click.option("--handler", default=None, help="module:callable taking {name: ndarray}.")
@click.option(
    "--time-scale",
    type=bounded(limits.TIME_SCALE),
    default=_DEFAULTS.time_scale,
    show_default=True,
    help="Replay: sleep profile time x this (0 = answer at once).",
)
@click.option("--seed", type=bounded(limits.SEED), default=_DEFAULTS.seed, show_default=True)
@click.option("--profiles", "profiles_path", type=click.Path(), default=None)
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS.names()),
    default=_DEFAULTS.transport,
    show_default=True,
    help="Framed TCP (fast) or gRPC; must match the router's --transport.",
)
@click.option(
    "--instances",
    type=bounded(limits.INSTANCES),
    default=1,
    show_default=True,
    help="Co-host N instances of the type (replay mode), one port each from --port "
    "(0 = any); seeds --seed, --seed+1, ...",
)
@click.option("--cpus", default=None, help="Pin this process to these cores, e.g. 1 or 1,2.")
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=1024),
    default=None,
    help="Model mode: the model's intra-op threads (default: the local type's, else the "
    "cores this process may use).",
)
@click.option(
    "--local-type",
    default=_DEFAULTS.local_type,
    show_default=True,
    help="Run as a local instance type (CPU pinning + CPU share; kairos.serving.worker.cpushare): "
    "a name, 'none', or 'auto' = the --instance-type when it is one and a model runs.",
)
@click.option("--parent-pid", type=int, default=None, hidden=True)
def worker(
    instance_type: str,
    model: str,
    host: str,
    port: int,
    mode: str,
    handler: str | None,
    time_scale: float,
    seed: int,
    profiles_path: str | None,
    transport: str,
    instances: int,
    cpus: str | None,
    threads: int | None,
    local_type: str,
    parent_pid: int | None,
) -> None:
    """Serve one instance to a router: replay its profile, or run a model."""
    spec = WorkerSpec(
        instance_type=instance_type,
        model=model,
        mode=mode,
        handler=handler,
        time_scale=time_scale,
        seed=seed,
        profiles_path=profiles_path,
        transport=transport,
        host=host,
        port=port,
        cpus=parse_cpus(cpus),
        local_type=local_type,
        threads=threads,
        parent_pid=parent_pid,
    )
    run_worker(spec, instances)


COMMANDS = [worker]


if __name__ == "__main__":
    run_command(worker, None, "kairos worker")
