"""The timeline of one autoscaled replay: rate, pool by type, cost rate and p99, per minute."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kairos.sim.timeline import TimelineResult, percent_down  # noqa: E402


def plot_timeline(result: TimelineResult, path: str | Path, title: str = "") -> Path:
    """Four panels sharing the time axis (minutes): arrival rate, rented instances per type
    (stacked), rented $/h, and p99 latency against the QoS target (minutes whose p99 is off
    the chart, unanswered queries included, are drawn at the top edge in red)."""
    m = result.minutes
    x = (m.start_s - result.start_s) / 60.0
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    rate, pool, cost, p99 = axes
    rate.plot(x, m.rate_qps, color="tab:blue", lw=1)
    rate.set_ylabel("arrivals (q/s)")
    types = list(m.pool)
    if types:
        pool.stackplot(x, *[m.pool[t] for t in types], labels=types, step="post", alpha=0.8)
        pool.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    pool.set_ylabel("instances rented")
    cost.plot(x, m.cost_per_hr, color="tab:green", lw=1, drawstyle="steps-post")
    cost.set_ylabel("$/h rented")
    top = 5.0 * result.qos_ms
    shown = np.where(np.isfinite(m.p99_ms), np.minimum(m.p99_ms, top), top)
    over = m.p99_ms > top
    p99.plot(x, shown, color="tab:purple", lw=1)
    p99.scatter(x[over], np.full(int(over.sum()), top), color="tab:red", s=8, zorder=3)
    p99.axhline(result.qos_ms, color="black", ls="--", lw=0.8, label=f"QoS {result.qos_ms:g} ms")
    p99.set_ylabel("p99 (ms)")
    p99.set_xlabel("minute of the trace")
    p99.legend(fontsize=7, loc="upper left")
    head = (
        f"{result.autoscaler}: ${result.cost_dollars:,.2f}, "
        f"{percent_down(result.qos_share, 2)} within QoS, {result.scale_actions} scale actions"
    )
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
