"""Figures for ``kairos compare``: allowable throughput per scheme (or, at a target rate, the
cost of holding it) and latency CDFs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kairos.compare import Comparison  # noqa: E402
from kairos.scenario import QOS_QUANTILE  # noqa: E402


def _label(c: Comparison, vary: set[str]) -> str:
    parts = []
    if "model" in vary or not vary:
        parts.append(c.model)
    if "budget" in vary:
        parts.append(f"{c.target_qps:g} q/s" if c.target_qps is not None else f"${c.level:g}/h")
    if "qos" in vary:
        parts.append(f"{c.qos_ms:g} ms")
    return ", ".join(parts)


def _varying(comparisons: Sequence[Comparison]) -> set[str]:
    vary = set()
    if len({c.model for c in comparisons}) > 1:
        vary.add("model")
    if len({c.level for c in comparisons}) > 1:
        vary.add("budget")  # the budget, or the target rate in target mode
    if len({c.qos_ms for c in comparisons}) > 1:
        vary.add("qos")
    return vary


def _value(c: Comparison, name: str) -> float:
    """What the schemes compete on: throughput at a budget, cost at a target rate."""
    s = c.scheme(name)
    return s.cost_per_hr if c.target_qps is not None else s.allowable_qps


def plot_throughput(comparisons: Sequence[Comparison], path: Path) -> Path:
    """Bars per scheme, one group per comparison; the homogeneous level is a dashed line.
    At a target rate the bars are each scheme's cost ($/h) of holding it.

    With a sweep over budgets (target rates) or QoS targets for one model, draw one curve per
    scheme instead.
    """
    vary = _varying(comparisons)
    names = [s.name for s in comparisons[0].schemes]
    for_rate = comparisons[0].target_qps is not None
    what = "cost of holding the target" if for_rate else "allowable throughput"
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(comparisons) + 5), 4.2))
    sweep = vary and vary <= {"budget", "qos"} and len(vary) == 1
    if sweep:
        key = "budget" if "budget" in vary else "qos"
        xs = [c.level if key == "budget" else c.qos_ms for c in comparisons]
        for name in names:
            ax.plot(xs, [_value(c, name) for c in comparisons], marker="o", label=name)
        level_label = "target rate (q/s)" if for_rate else "budget ($/h)"
        ax.set_xlabel(level_label if key == "budget" else "QoS target (ms)")
        swept = ("target rate" if for_rate else key) if key == "budget" else key
        ax.set_title(f"{comparisons[0].model}: {what} vs {swept}")
    else:
        _bars(ax, comparisons, names, vary, what)
    ax.set_ylabel("$/h of the pool" if for_rate else "queries/s with p99 within QoS")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ax, comparisons: Sequence[Comparison], names: list[str], vary: set[str], what: str):
    width = 0.8 / len(names)
    x = np.arange(len(comparisons))
    for k, name in enumerate(names):
        bars = ax.bar(x + k * width, [_value(c, name) for c in comparisons], width, label=name)
        if len(comparisons) == 1:
            ax.bar_label(bars, fmt="%.2f" if comparisons[0].target_qps else "%.0f", fontsize=8)
    for i, c in enumerate(comparisons):
        if any(s.name == "homogeneous" for s in c.schemes):
            level = _value(c, "homogeneous")
            ax.hlines(level, i - width, i + 0.8, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks(x + 0.4 - width / 2, [_label(c, vary) for c in comparisons])
    ax.set_title(f"{what} (dashed: best homogeneous pool)")
    if len(comparisons) > 1 and "model" in vary:
        ax.set_yscale("log")


def plot_latency_cdfs(comparisons: Sequence[Comparison], path: Path) -> Path:
    """Per comparison, two panels at its common load: the latency CDF of every scheme, and
    the tail (CDF 0.9 to 1) where the p99 target is decided."""
    usable = [c for c in comparisons if c.latency_ms]
    rows = max(1, len(usable))
    fig, axes = plt.subplots(rows, 2, figsize=(10.0, 3.6 * rows), squeeze=False)
    vary = _varying(comparisons)
    for (full, tail), c in zip(axes, usable, strict=False):
        for name, lat in c.latency_ms.items():
            if len(lat):
                cdf = np.arange(1, len(lat) + 1) / len(lat)
                full.plot(lat, cdf, label=name, linewidth=1.2)
                tail.plot(lat, cdf, label=name, linewidth=1.2)
        for ax in (full, tail):
            ax.axvline(c.qos_ms, color="black", linestyle="dashed", linewidth=1)
            ax.set_xlabel("latency (ms); dashed: QoS target")
        full.set_xscale("log")
        lats = [lat for lat in c.latency_ms.values() if len(lat)]
        if lats:
            lo = min(float(np.quantile(lat, 0.9)) for lat in lats)
            hi = max(max(float(lat[-1]) for lat in lats), c.qos_ms)
            tail.set_xlim(0.95 * lo, 1.05 * hi)
        full.set_ylabel("CDF")
        full.set_title(f"{_label(c, vary)} at {c.cdf_rate_qps:.1f} qps", fontsize=9)
        tail.axhline(QOS_QUANTILE, color="grey", linestyle="dotted", linewidth=1)
        tail.set_ylim(0.9, 1.001)
        tail.set_title(f"tail (dotted: {QOS_QUANTILE:.0%})", fontsize=9)
        tail.legend(fontsize=7, loc="lower right")
    if not usable:
        for ax in axes.flat:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
