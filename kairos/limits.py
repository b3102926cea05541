"""Every numeric limit Kairos enforces, declared once (docs/limits.md explains each).

A ``Range`` is the valid interval of one setting. The CLI turns each into a click parameter
type, so a command line is refused before any work or allocation; library entry points call
``Range.check`` on the same objects, so a caller of the library gets the same rule.

Caps on sizes (queries per run, instances per pool, rows per CSV file, queries in flight)
keep memory bounded whatever the input says: every per-query or per-instance structure in
Kairos is at most that many entries long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kairos.errors import ConfigError, KairosError

# Sizes. ``kairos simulate`` peaks at about 0.35 KB per query (750 MB at MAX_QUERIES, with
# 100 MB of it the interpreter and data) and its instances cost little (1,000 of them under
# the kairos policy: 100 MB peak), so these caps keep one run near 1 GB (docs/limits.md).
MAX_QUERIES = 2_000_000  # queries one Poisson simulation (--queries) holds
# A trace file or a generated trace: a day of traffic at 70 q/s. The time-varying replay draws
# service times in chunks and keeps about 60 bytes per query (docs/limits.md has the figures).
MAX_TRACE_QUERIES = 8_000_000
MAX_POOL_INSTANCES = 1_000  # instances in one pool (--pool, --workers, --instances)
MAX_BATCH_SIZE = 1_000_000  # samples in one query (batch-mix and trace files, fixed:N)
MAX_CSV_ROWS = 5_000_000  # rows in one profile, price or batch-mix file
MAX_LOADGEN_QUERIES = 1_000_000  # queries one load-generator run sends (rate x duration)
MAX_IN_FLIGHT = 2_000  # unanswered queries of one load-generator run; later sends wait
# kairos profile builds one request per batch size: RM2's inputs are 15 KB a sample, so this
# bounds one request's memory; the runs cap bounds the timings it keeps per batch size.
MAX_PROFILE_BATCH_SIZE = 10_000
MAX_PROFILE_RUNS = 10_000


@dataclass(frozen=True)
class Range:
    """The valid values of one setting: ``lo <(=) x <(=) hi``, finite, whole if ``integer``."""

    option: str  # the CLI spelling, e.g. "--rate-qps"
    lo: float
    hi: float
    unit: str = ""
    integer: bool = False
    lo_open: bool = False
    example: str = ""

    def describe(self) -> str:
        """``0 < x <= 1000000 qps`` style text for messages and help."""
        lo_op = "<" if self.lo_open else "<="
        unit = f" {self.unit}" if self.unit else ""
        whole = " (whole numbers)" if self.integer else ""
        return f"{_num(self.lo)} {lo_op} x <= {_num(self.hi)}{unit}{whole}"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not valid (``"is not a whole number"``, ...), or None if it is."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number"
        if not math.isfinite(value):
            return "is not a finite number"
        if self.integer and value != int(value):
            return "is not a whole number"
        above_lo = value > self.lo if self.lo_open else value >= self.lo
        if not (above_lo and value <= self.hi):
            return f"is outside its range {self.describe()}"
        return None

    def contains(self, value: float) -> bool:
        return self.problem(value) is None

    def check(
        self, value: float, option: str | None = None, error: type[KairosError] = ConfigError
    ) -> float:
        """Return ``value`` if it is valid; raise ``error`` naming it and the range."""
        problem = self.problem(value)
        if problem is not None:
            name = option or self.option
            example = f", for example {name} {self.example}" if self.example else ""
            raise error(
                f"{name} {_show(value)} {problem} (docs/limits.md).",
                f"pass {name} as {self.describe()}{example}.",
            )
        return int(value) if self.integer else float(value)


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value) if isinstance(value, int) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _num(x: float) -> str:
    if x != int(x):
        return f"{x:g}"
    return f"{int(x):,}" if abs(x) >= 10_000 else str(int(x))


# Workload and data.
RATE_QPS = Range("--rate-qps", 0, 1e6, "qps", lo_open=True, example="50")
QOS_MS = Range("--qos-ms", 0, 3_600_000, "ms", lo_open=True, example="350")
QUERIES = Range("--queries", 1, MAX_QUERIES, "queries", integer=True, example="20000")
TRIAL_QUERIES = Range(
    "--queries", 100, MAX_QUERIES, "queries per trial", integer=True, example="3000"
)
PRECISION = Range("--precision", 0.001, 0.5, example="0.02")
SEED = Range("--seed", 0, 2**32 - 1, integer=True, example="0")
BUDGET_PER_HR = Range("--budget-per-hr", 0, 10_000, "$/h", lo_open=True, example="2.5")
BATCH_SIZE = Range("batch size", 1, MAX_BATCH_SIZE, "samples", integer=True, example="100")

# Planning and comparison.
TOP = Range("--top", 1, 10_000, "pools", integer=True, example="10")
VERIFY_TOP = Range("--verify", 0, 1_000, "pools", integer=True, example="5")
TOP_K = Range("--top-k", 1, 10_000, "pools", integer=True, example="20")

# Live serving.
PORT = Range("--port", 0, 65_535, integer=True, example="8000")
TIME_SCALE = Range("--time-scale", 0, 1_000, example="1")
MAX_QUEUE = Range("--max-queue", 1, 1_000_000, "queries", integer=True, example="1000")
MAX_BODY_BYTES = Range("--max-body-bytes", 1024, 1024**3, "bytes", integer=True, example="16777216")
DRAIN_TIMEOUT_S = Range("--drain-timeout-s", 0, 86_400, "s", lo_open=True, example="30")
TIMEOUT_FLOOR_S = Range("--timeout-floor-s", 0, 3_600, "s", lo_open=True, example="2")
MAX_ATTEMPTS = Range("--max-attempts", 1, 100, "attempts", integer=True, example="3")
TRAFFIC_WINDOW_S = Range("--traffic-window-s", 0, 86_400, "s", lo_open=True, example="60")
OVERHEAD_FACTOR = Range("--overhead-factor", 0, 100, example="3")
INSTANCES = Range("--instances", 1, MAX_POOL_INSTANCES, "instances", integer=True, example="9")
DURATION_S = Range("--duration-s", 0, 86_400, "s", lo_open=True, example="30")

# Profiling (kairos profile): each batch size of --batch-sizes, and the runs per batch size.
PROFILE_BATCH_SIZE = Range(
    "--batch-sizes", 1, MAX_PROFILE_BATCH_SIZE, "samples", integer=True, example="1,10,100"
)
PROFILE_RUNS = Range("--runs", 1, MAX_PROFILE_RUNS, "runs", integer=True, example="20")
PROFILE_WARMUP = Range("--warmup", 0, MAX_PROFILE_RUNS, "runs", integer=True, example="3")

# Traces and time-varying replays (kairos trace, kairos simulate --trace --autoscaler).
TRACE_DURATION_S = Range("--duration-s", 0, 7 * 86_400, "s", lo_open=True, example="3600")
TROUGH_QPS = Range("--trough-qps", 0, 1e6, "qps", example="10")
PERIOD_S = Range("--period-s", 1, 30 * 86_400, "s", example="3600")
NOISE = Range("--noise", 0, 1, example="0.1")
TICK_S = Range("--tick-s", 0, 3_600, "s", lo_open=True, example="10")
BOOT_S = Range("--boot-s", 0, 3_600, "s", example="90")
MIN_CHARGE_S = Range("--min-charge-s", 0, 3_600, "s", example="60")
