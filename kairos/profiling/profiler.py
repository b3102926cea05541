"""Measuring a model's service time per batch size on the machine (or local type) it runs on.

``profile_type`` measures one instance type on this machine: it starts a model worker the
way the router would (confined to a local type's CPU share where the type is one), builds a
request body per batch size the way the load generator does (binary tensors, seeded
values), drops the warm-up runs and times each remaining run on its own: the round trip
through the worker's carrier, with the worker's input preparation and inference apart. It
is the seam for other backends: anything that can run Python on a machine of the type (a
Ray actor placed by its label, say) calls it there and ships the ``TypeProfile`` back.
``profile_handler`` measures a handler in this process instead (the model's own cost).
``merge_profiles_csv`` writes or merges the result into the profiles CSV every other command
reads (``model,instance_type,batch_size,latency_ms``, one row per timed run).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kairos.client.loadgen import BodyFactory
from kairos.csvio import read_csv
from kairos.errors import ConfigError, ProfileError
from kairos.limits import PROFILE_BATCH_SIZE, PROFILE_RUNS, PROFILE_WARMUP
from kairos.profiles import PROFILE_COLUMNS
from kairos.profiling.probe import WorkerProbe
from kairos.protocol.tensors import TensorSpec
from kairos.serving.worker.handlers import ModelHandler, QueryTimes
from kairos.serving.worker.launch import WorkerSpec


@dataclass(frozen=True)
class ProfileSettings:
    """What ``kairos profile`` measures; the CLI's defaults are these."""

    batch_sizes: tuple[int, ...] = (1, 10, 50, 100, 200, 400, 600, 800, 1000)
    runs: int = 20  # timed runs per batch size
    warmup: int = 3  # runs per batch size before timing starts (dropped)
    seed: int = 0  # the inputs' values

    def __post_init__(self) -> None:
        # The ranges are kairos.limits'; the messages name the whole list and both counts,
        # which one Range.check (one value) cannot.
        sizes, runs, warmup = PROFILE_BATCH_SIZE, PROFILE_RUNS, PROFILE_WARMUP
        bad = [b for b in self.batch_sizes if not sizes.contains(b)]
        if not self.batch_sizes or bad:
            raise ConfigError(
                f"batch sizes {list(self.batch_sizes)} are not all in "
                f"{int(sizes.lo)}..{int(sizes.hi)}.",
                "pass --batch-sizes as whole numbers, e.g. 1,10,100,1000.",
            )
        if not runs.contains(self.runs) or not warmup.contains(self.warmup):
            raise ConfigError(
                f"runs {self.runs} / warm-up {self.warmup} are outside "
                f"{int(runs.lo)}..{int(runs.hi)} / {int(warmup.lo)}..{int(warmup.hi)}.",
                f"pass --runs {int(runs.lo)} or more and --warmup {int(warmup.lo)} or more "
                f"(both at most {int(max(runs.hi, warmup.hi))}).",
            )


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(
            f"--batch-sizes {text!r} is not a comma-separated list of whole numbers.",
            "write e.g. --batch-sizes 1,10,100,1000.",
        ) from None
    return tuple(sizes)


@dataclass(frozen=True)
class BatchTimes:
    """The timed runs of one batch size (milliseconds, one entry per run)."""

    batch_size: int
    prepare_ms: np.ndarray
    infer_ms: np.ndarray
    total_ms: np.ndarray


@dataclass(frozen=True)
class TypeProfile:
    model: str
    instance_type: str
    batches: tuple[BatchTimes, ...]

    def rows(self) -> list[tuple[str, str, int, float]]:
        """Profile CSV rows: one per timed run, latency = the whole query's service time."""
        return [
            (self.model, self.instance_type, b.batch_size, float(ms))
            for b in self.batches
            for ms in b.total_ms
        ]


Progress = Callable[[str], None]
Query = Callable[[bytes, int | None], QueryTimes]  # runs one query body, returns its times


def measure(
    query: Query,
    inputs: Sequence[TensorSpec] | None,
    model: str,
    instance_type: str,
    settings: ProfileSettings,
    progress: Progress | None = None,
) -> TypeProfile:
    """Run ``query`` on a request of each batch size: warm-up runs dropped, each run timed."""
    if inputs is None:
        raise ConfigError(
            f"the model {model!r} does not declare its inputs, so no request can be built.",
            "give the handler an 'inputs' attribute (docs/models.md, handler contract).",
        )
    bodies = BodyFactory(tuple(inputs), settings.seed)
    results = []
    n = len(settings.batch_sizes)
    for k, batch in enumerate(settings.batch_sizes, start=1):
        body, json_length = bodies.binary_body(batch)
        for _ in range(settings.warmup):
            query(body, json_length)
        times = [query(body, json_length) for _ in range(settings.runs)]
        results.append(_batch_times(batch, times))
        if progress is not None:
            total = results[-1].total_ms
            progress(
                f"profile {model} on {instance_type}: batch {batch} ({k}/{n}), "
                f"{settings.runs} runs, mean {total.mean():.2f} ms, "
                f"p99 {np.percentile(total, 99):.2f} ms"
            )
    return TypeProfile(model, instance_type, tuple(results))


def profile_handler(
    handler: ModelHandler,
    model: str,
    instance_type: str,
    settings: ProfileSettings,
    progress: Progress | None = None,
) -> TypeProfile:
    """Measure ``handler`` in this process (no worker, no carrier: the model's own cost)."""

    def query(body: bytes, json_length: int | None) -> QueryTimes:
        return handler.timed(body, json_length)[1]

    return measure(query, handler.inputs, model, instance_type, settings, progress)


def profile_type(
    worker: WorkerSpec, settings: ProfileSettings, progress: Progress | None = None
) -> TypeProfile:
    """Profile ``worker.instance_type`` serving ``worker.model`` on this machine.

    Starts ``worker`` in model mode as the router would (confined when the type is a local
    type) and times queries through the framed-TCP carrier the router uses: each run's
    latency is the round trip, what an instance is busy for per query with its carrier;
    preparation and inference are the worker's own figures. This is the call another backend
    makes on a machine of the type (a Ray actor placed by its label, for example).
    """
    model, instance_type = worker.model, worker.instance_type
    with WorkerProbe(worker, progress) as probe:
        return measure(probe.query, probe.inputs, model, instance_type, settings, progress)


def _batch_times(batch: int, times: list[QueryTimes]) -> BatchTimes:
    return BatchTimes(
        batch,
        np.array([t.prepare_ms for t in times]),
        np.array([t.infer_ms for t in times]),
        np.array([t.total_ms for t in times]),
    )


def summary_rows(profile: TypeProfile) -> list[list[str]]:
    """Per batch size: runs, preparation and inference (medians), total mean and p99."""
    return [
        [
            str(b.batch_size),
            str(len(b.total_ms)),
            f"{np.median(b.prepare_ms):.3f}",
            f"{np.median(b.infer_ms):.3f}",
            f"{b.total_ms.mean():.3f}",
            f"{np.percentile(b.total_ms, 99):.3f}",
        ]
        for b in profile.batches
    ]


SUMMARY_HEADER = ["batch_size", "runs", "prepare_p50_ms", "infer_p50_ms", "mean_ms", "p99_ms"]


def check_writable(path: str | Path) -> Path:
    """Fail before any work if ``path`` cannot be written (a folder, a missing directory)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"output {str(p)!r} is a directory.", "give a file name.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(
            f"cannot write {str(p)!r}: {str(parent)!r} is not a writable directory.",
            "create the directory or pick another path.",
        )
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"cannot write {str(p)!r} (no permission).", "pick another path.")
    return p


def merge_profiles_csv(path: str | Path, profile: TypeProfile) -> str:
    """Write ``profile``'s rows into the profiles CSV at ``path``, keeping every other
    (model, type)'s rows; returns a line saying what happened."""
    p = Path(path)
    kept: list[list[str]] = []
    replaced = 0
    if p.exists():
        # The one CSV reader: a malformed file is reported as such, never overwritten.
        for _, (model, itype, batch, latency) in read_csv(
            p, "profile file", PROFILE_COLUMNS, ProfileError
        ):
            if (model, itype) == (profile.model, profile.instance_type):
                replaced += 1
            else:
                kept.append([str(model), str(itype), str(int(batch)), repr(float(latency))])
    new = [[m, t, str(b), repr(ms)] for m, t, b, ms in profile.rows()]
    _write_csv(p, [c.name for c in PROFILE_COLUMNS], kept + new)
    pair = f"{profile.model} on {profile.instance_type}"
    if replaced:
        return f"replaced the {replaced} earlier rows of {pair} in {p} with {len(new)} new ones"
    return f"wrote {len(new)} rows of {pair} to {p} ({len(kept)} other rows kept)"


def write_details_csv(path: str | Path, profile: TypeProfile) -> None:
    """Every timed run with its preparation and inference time apart."""
    header = ["model", "instance_type", "batch_size", "run", "prepare_ms", "infer_ms", "latency_ms"]
    rows = [
        [
            profile.model,
            profile.instance_type,
            str(b.batch_size),
            str(k),
            repr(float(p)),
            repr(float(i)),
            repr(float(t)),
        ]
        for b in profile.batches
        for k, (p, i, t) in enumerate(zip(b.prepare_ms, b.infer_ms, b.total_ms, strict=True))
    ]
    _write_csv(Path(path), header, rows)


def merge_price_csv(path: str | Path, instance_type: str, price_per_hr: float) -> str:
    """Set ``instance_type``'s price in a prices CSV (``instance_type,price_per_hr``)."""
    if not math.isfinite(price_per_hr) or price_per_hr <= 0:
        raise ConfigError(f"price {price_per_hr!r} is not positive.", "give $/h above 0.")
    p = Path(path)
    rows: dict[str, str] = {}
    if p.exists():
        from kairos.catalog import load_prices

        rows = {t: repr(v) for t, v in load_prices(p).prices_per_hr.items()}
    rows[instance_type] = repr(price_per_hr)
    _write_csv(p, ["instance_type", "price_per_hr"], [[t, v] for t, v in rows.items()])
    return f"price of {instance_type} (${price_per_hr:g}/h) set in {p}"


def _write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> None:
    """Write atomically: a reader never sees half a file, a crash never loses the old one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
