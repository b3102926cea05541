"""Figures for ``kairos compare``: allowable throughput per scheme and latency CDFs."""

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
        parts.append(f"${c.budget_per_hr:g}/h")
    if "qos" in vary:
        parts.append(f"{c.qos_ms:g} ms")
    return ", ".join(parts)


def _varying(comparisons: Sequence[Comparison]) -> set[str]:
    vary = set()
    if len({c.model for c in comparisons}) > 1:
        vary.add("model")
    if len({c.budget_per_hr for c in comparisons}) > 1:
        vary.add("budget")
    if len({c.qos_ms for c in comparisons}) > 1:
        vary.add("qos")
    return vary


def plot_throughput(comparisons: Sequence[Comparison], path: Path) -> Path:
    """Bars per scheme, one group per comparison; the homogeneous level is a dashed line.

    With a sweep over budgets or QoS targets for one model, draw one curve per scheme instead.
    """
    vary = _varying(comparisons)
    names = [s.name for s in comparisons[0].schemes]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(comparisons) + 5), 4.2))
    sweep = vary and vary <= {"budget", "qos"} and len(vary) == 1
    if sweep:
        key = "budget" if "budget" in vary else "qos"
        xs = [c.budget_per_hr if key == "budget" else c.qos_ms for c in comparisons]
        for name in names:
            ax.plot(xs, [c.scheme(name).allowable_qps for c in comparisons], marker="o", label=name)
        ax.set_xlabel("budget ($/h)" if key == "budget" else "QoS target (ms)")
        ax.set_title(f"{comparisons[0].model}: allowable throughput vs {key}")
    else:
        width = 0.8 / len(names)
        x = np.arange(len(comparisons))
        for k, name in enumerate(names):
            values = [c.scheme(name).allowable_qps for c in comparisons]
            bars = ax.bar(x + k * width, values, width, label=name)
            if len(comparisons) == 1:
                ax.bar_label(bars, fmt="%.0f", fontsize=8)
        for i, c in enumerate(comparisons):
            if any(s.name == "homogeneous" for s in c.schemes):
                level = c.scheme("homogeneous").allowable_qps
                ax.hlines(
                    level, i - width, i + 0.8, colors="black", linestyles="dashed", linewidth=1
                )
        ax.set_xticks(x + 0.4 - width / 2, [_label(c, vary) for c in comparisons])
        ax.set_title("allowable throughput (dashed: best homogeneous pool)")
        if len(comparisons) > 1 and "model" in vary:
            ax.set_yscale("log")
    ax.set_ylabel("queries/s with p99 within QoS")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
