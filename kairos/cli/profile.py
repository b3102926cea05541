"""``kairos profile``: measure a model's service time per batch size on this machine."""

from __future__ import annotations

import click

from kairos.cli.common import emit_json, table
from kairos.profiling.profiler import ProfileSettings
from kairos.serving.worker.launch import WorkerSpec

DEFAULTS = ProfileSettings()
WORKER_DEFAULTS = WorkerSpec("", "")


@click.command("profile")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Built-in model (rm2, wnd, mtwnd, dien, ncf), or the name to record for --handler.",
)
@click.option(
    "--instance-type",
    required=True,
    help="The type measured; a local type (local.full, local.half, local.quarter) "
    "also confines this run to its CPU share.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(),
    help="Profiles CSV to write, or merge into (other types' rows are kept).",
)
@click.option("--batch-sizes", default=",".join(map(str, DEFAULTS.batch_sizes)), show_default=True)
@click.option(
    "--runs", type=int, default=DEFAULTS.runs, show_default=True, help="Timed runs per batch size."
)
@click.option(
    "--warmup",
    type=int,
    default=DEFAULTS.warmup,
    show_default=True,
    help="Runs per batch size before timing (dropped).",
)
@click.option("--handler", default=None, help="Profile your own model: module:callable.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Intra-op threads (default: the local type's, else the usable cores).",
)
@click.option(
    "--local-type",
    default=WORKER_DEFAULTS.local_type,
    show_default=True,
    help="Confine as a local type: a name, 'none', or 'auto' (the instance type when it is one).",
)
@click.option("--cpus", default=None, help="Cores to run on, e.g. 1.")
@click.option(
    "--details",
    "details_path",
    type=click.Path(),
    default=None,
    help="Also write every run with preparation and inference apart.",
)
@click.option(
    "--prices-out",
    type=click.Path(),
    default=None,
    help="Also set the type's price in this prices CSV (a local type's notional "
    "price, or --price-per-hr).",
)
@click.option("--price-per-hr", type=float, default=None)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def profile_command(
    model,
    instance_type,
    out_path,
    batch_sizes,
    runs,
    warmup,
    handler,
    threads,
    local_type,
    cpus,
    details_path,
    prices_out,
    price_per_hr,
    seed,
    as_json,
):
    """Measure MODEL per batch size here and write it into a profiles CSV."""
    from kairos.aio import parse_cpus
    from kairos.profiling.profiler import (
        SUMMARY_HEADER,
        check_writable,
        merge_price_csv,
        merge_profiles_csv,
        parse_batch_sizes,
        profile_type,
        summary_rows,
        write_details_csv,
    )

    settings = ProfileSettings(parse_batch_sizes(batch_sizes), runs, warmup, seed)
    price = _price(instance_type, prices_out, price_per_hr)
    for path in (out_path, details_path, prices_out):
        if path is not None:
            check_writable(path)
    if handler is None:  # fail here, not in the worker, for a model that is not built in
        from kairos.models import check_model_name, require_torch

        check_model_name(model)
        require_torch()  # looks torch up without importing it: the worker runs the model
    if local_type not in ("auto", "none"):
        from kairos.serving.worker.cpushare import local_type as check_local_type

        check_local_type(local_type)
    worker = WorkerSpec(
        instance_type,
        model,
        mode="model",
        handler=handler,
        local_type=local_type,
        cpus=parse_cpus(cpus),
        threads=threads,
    )
    say = (lambda line: click.echo(line, err=True)) if not as_json else None
    result = profile_type(worker, settings, say)
    click.echo(merge_profiles_csv(out_path, result), err=True)
    if details_path:
        write_details_csv(details_path, result)
    if prices_out and price is not None:
        click.echo(merge_price_csv(prices_out, instance_type, price), err=True)
    rows = summary_rows(result)
    if as_json:
        emit_json(
            {
                "model": model,
                "instance_type": instance_type,
                "batches": [dict(zip(SUMMARY_HEADER, r, strict=True)) for r in rows],
            }
        )
        return
    click.echo(f"{model} on {instance_type} (milliseconds per query):")
    click.echo(table(rows, SUMMARY_HEADER))
    click.echo(
        "prepare = the worker decodes and checks the request, arrays to tensors; infer = the "
        "model; mean/p99 = the round trip through the worker, written to the profile."
    )


def _price(instance_type: str, prices_out: str | None, price_per_hr: float | None) -> float | None:
    from kairos.errors import ConfigError
    from kairos.serving.worker.cpushare import LOCAL_TYPES

    if prices_out is None:
        return None
    if price_per_hr is not None:
        return price_per_hr
    if instance_type in LOCAL_TYPES:
        return LOCAL_TYPES.get(instance_type).price_per_hr
    raise ConfigError(
        f"--prices-out needs a price for {instance_type!r}, which is not a local type.",
        "pass --price-per-hr with its hourly price.",
    )


COMMANDS = [profile_command]
