"""``kairos trace``: write a synthetic trace (``arrival_s,batch_size``) from a seed."""

from __future__ import annotations

import click
import numpy as np

from kairos import limits
from kairos.cli.common import bounded, emit_json, output_file, table
from kairos.traces import SHAPES, TraceSettings, synthetic_trace, write_trace
from kairos.workload import parse_mix

DEFAULTS = TraceSettings()


@click.command()
@click.argument("shape", type=click.Choice(list(SHAPES)))
@click.option("--out", "out_path", type=output_file(".csv"), required=True, help="CSV to write.")
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@click.option(
    "--duration-s",
    type=bounded(limits.TRACE_DURATION_S),
    default=DEFAULTS.duration_s,
    show_default=True,
    help="Length of the trace.",
)
@click.option(
    "--peak-qps",
    type=bounded(limits.RATE_QPS),
    default=DEFAULTS.peak_qps,
    show_default=True,
    help="Rate at the peak (on-off: bursts are 80-100% of it).",
)
@click.option(
    "--trough-qps",
    type=bounded(limits.TROUGH_QPS),
    default=DEFAULTS.trough_qps,
    show_default=True,
    help="Rate at the trough (on-off: while idle; 0 for silence).",
)
@click.option(
    "--period-s",
    type=bounded(limits.PERIOD_S),
    default=None,
    help="diurnal: trough-to-trough period (default: the duration); multiscale: seconds "
    "between drift levels (default 900).",
)
@click.option(
    "--noise",
    type=bounded(limits.NOISE),
    default=DEFAULTS.noise,
    show_default=True,
    help="diurnal, multiscale: relative std of the per-minute swings.",
)
@click.option(
    "--at-s",
    type=bounded(limits.TRACE_DURATION_S),
    default=None,
    help="step, spike: when it happens (default: half the duration).",
)
@click.option(
    "--spike-s",
    type=bounded(limits.TRACE_DURATION_S),
    default=DEFAULTS.spike_s,
    show_default=True,
    help="spike: how long the peak lasts.",
)
@click.option(
    "--on-s",
    type=bounded(limits.TRACE_DURATION_S),
    default=DEFAULTS.on_s,
    show_default=True,
    help="on-off: length of a burst.",
)
@click.option(
    "--off-s",
    type=bounded(limits.TRACE_DURATION_S),
    default=DEFAULTS.off_s,
    show_default=True,
    help="on-off: idle time before each burst.",
)
@click.option(
    "--batch-mix",
    default="production",
    show_default=True,
    help="production | fixed:N | FILE.csv with columns batch_size,weight.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def trace(
    shape,
    out_path,
    seed,
    duration_s,
    peak_qps,
    trough_qps,
    period_s,
    noise,
    at_s,
    spike_s,
    on_s,
    off_s,
    batch_mix,
    as_json,
):
    """Write a synthetic SHAPE trace (diurnal, step, spike, on-off, multiscale) to --out.

    Arrivals are a Poisson process whose rate follows the shape second by second; batches
    come from --batch-mix. The same options and --seed write the same file.
    """
    settings = TraceSettings(
        duration_s=duration_s,
        peak_qps=peak_qps,
        trough_qps=trough_qps,
        period_s=period_s,
        noise=noise,
        at_s=at_s,
        spike_s=spike_s,
        on_s=on_s,
        off_s=off_s,
    )
    stream = synthetic_trace(shape, settings, parse_mix(batch_mix), seed)
    write_trace(stream, out_path)
    per_minute = np.bincount((stream.arrival_s // 60.0).astype(np.int64)) / 60.0
    payload = {
        "shape": shape,
        "out": out_path,
        "seed": seed,
        "queries": len(stream),
        "duration_s": duration_s,
        "mean_qps": len(stream) / duration_s,
        "peak_minute_qps": float(per_minute.max()),
        "trough_minute_qps": float(per_minute.min()),
        "mean_batch": float(stream.batch_size.mean()),
    }
    if as_json:
        emit_json(payload)
        return
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in payload.items()]
    click.echo(table(rows, ["trace", "value"]))


COMMANDS = [trace]
