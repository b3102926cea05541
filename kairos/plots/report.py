"""A short report (Markdown or HTML) that puts a comparison's table, plots and settings together."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from kairos.compare import Comparison
from kairos.errors import ConfigError

REPORT_SUFFIXES = (".html", ".htm", ".md")

# What each column of the comparison table means (printed under the table and in reports).
LEGEND = {
    "scheme": "how the pool and the distributor were chosen (see docs/design.md)",
    "pool": "the instances rented, TYPE=N",
    "policy": "the distribution policy that serves the pool",
    "$/h": "hourly price of the pool",
    "allowable qps": "simulated allowable throughput: the highest Poisson rate at which 99% "
    "of queries meet the QoS target",
    "x homogeneous": "allowable qps divided by the homogeneous scheme's",
    "x oracle": "allowable qps divided by the oracle's (the best pool within the budget under "
    "the kairos policy, found by branch and bound over every pool)",
    "pools tried": "pools the scheme simulated to make its choice; '(free)' marks searches the "
    "paper did not charge to a competitor",
    "fluid bound qps": "the fluid upper bound on the pool's throughput at this QoS (an LP over "
    "the service-time distributions; no policy can sustain more)",
}
COLUMNS = list(LEGEND)
# The same for a comparison at a target rate (``kairos compare --target-qps``).
TARGET_LEGEND = {
    "scheme": LEGEND["scheme"],
    "pool": "the cheapest pool the scheme found that holds the target rate (one simulated "
    "trial at that rate meets QoS)",
    "policy": LEGEND["policy"],
    "$/h": "hourly price of the pool: what the scheme pays to hold the target",
    "x homogeneous $/h": "$/h divided by the homogeneous scheme's (below 1: cheaper)",
    "allowable qps": "the pool's simulated allowable throughput (at least the target)",
    "pools tried": "pools the scheme simulated at the target rate to make its choice; '(free)' "
    "marks searches not charged as explorations",
    "fluid bound qps": LEGEND["fluid bound qps"],
}


def legend_for(for_rate: bool) -> dict[str, str]:
    return TARGET_LEGEND if for_rate else LEGEND


def columns(c: Comparison) -> list[str]:
    return list(legend_for(c.target_qps is not None))


def legend_lines(for_rate: bool = False) -> list[str]:
    """``column: meaning`` for every column of the comparison table."""
    return [f"{name}: {meaning}" for name, meaning in legend_for(for_rate).items()]


def scheme_rows(c: Comparison) -> list[list[str]]:
    if c.target_qps is not None:
        return _target_rows(c)
    names = {s.name for s in c.schemes}
    rows = []
    for s in c.schemes:
        homo = f"{c.ratio(s.name, 'homogeneous'):.2f}" if "homogeneous" in names else "-"
        orc = f"{c.ratio(s.name, 'oracle'):.2f}" if "oracle" in names else "-"
        tried = f"{s.explorations}" + ("" if s.explorations_charged else " (free)")
        rows.append(
            [
                s.name,
                str(s.pool),
                s.policy,
                f"{s.cost_per_hr:.3f}",
                f"{s.allowable_qps:.1f}",
                homo,
                orc,
                tried,
                f"{s.upper_bound_qps:.1f}",
            ]
        )
    return rows


def _target_rows(c: Comparison) -> list[list[str]]:
    homo = "homogeneous" in {s.name for s in c.schemes}
    return [
        [
            s.name,
            str(s.pool),
            s.policy,
            f"{s.cost_per_hr:.3f}",
            f"{c.cost_ratio(s.name, 'homogeneous'):.2f}" if homo else "-",
            f"{s.allowable_qps:.1f}",
            f"{s.explorations}" + ("" if s.explorations_charged else " (free)"),
            f"{s.upper_bound_qps:.1f}",
        ]
        for s in c.schemes
    ]


def _title(c: Comparison) -> str:
    return f"{c.model}, {c.level_text}, QoS p99 {c.qos_ms:g} ms"


def write_report(
    comparisons: Sequence[Comparison],
    path: Path,
    plots: Sequence[Path],
    settings: Mapping[str, str],
) -> Path:
    """Write ``path`` as HTML (``.html``, ``.htm``) or Markdown (``.md``)."""
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise ConfigError(
            f"report {str(path)!r} has suffix {path.suffix or 'none'!r}.",
            f"name the report with one of {', '.join(REPORT_SUFFIXES)}.",
        )
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(_html(comparisons, plots, settings), encoding="utf-8")
    else:
        path.write_text(_markdown(comparisons, path, plots, settings), encoding="utf-8")
    return path


def _for_rate(comparisons: Sequence[Comparison]) -> bool:
    return bool(comparisons) and comparisons[0].target_qps is not None


def _legend(comparisons: Sequence[Comparison]) -> dict[str, str]:
    return legend_for(_for_rate(comparisons))


def _summary(comparisons: Sequence[Comparison]) -> str:
    if _for_rate(comparisons):
        return (
            "Each scheme's cost is the price of the cheapest pool it found that holds the target "
            "rate in simulation (one trial at the rate meets QoS for 99% of queries) under its "
            "policy; the same workload and seed for every scheme."
        )
    return (
        "Each scheme's throughput is the simulator's allowable throughput (highest Poisson "
        "rate with 99% of queries within QoS) under the same workload and seed."
    )


def _markdown(comparisons, path: Path, plots, settings) -> str:
    out = ["# Kairos comparison", "", "## Settings", ""]
    out += [f"- **{k}**: `{v}`" for k, v in settings.items()]
    out += [
        "",
        _summary(comparisons),
        "",
        "Columns:",
        "",
        *[f"- **{name}**: {meaning}" for name, meaning in _legend(comparisons).items()],
        "",
    ]
    for c in comparisons:
        out += [f"## {_title(c)}", ""]
        out.append("| " + " | ".join(columns(c)) + " |")
        out.append("|" + "---|" * len(columns(c)))
        out += ["| " + " | ".join(r) + " |" for r in scheme_rows(c)]
        out.append("")
    out += ["## Figures", ""]
    for p in plots:
        rel = (
            Path(p).resolve().relative_to(path.resolve().parent)
            if Path(p).resolve().is_relative_to(path.resolve().parent)
            else Path(p)
        )
        out.append(f"![{Path(p).stem}]({rel.as_posix()})")
    return "\n".join(out) + "\n"


def _html(comparisons, plots, settings) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Kairos comparison</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        "</style></head><body><h1>Kairos comparison</h1><h2>Settings</h2><ul>",
    ]
    parts += [f"<li><b>{esc(k)}</b>: <code>{esc(str(v))}</code></li>" for k, v in settings.items()]
    parts.append(f"</ul><p>{esc(_summary(comparisons))}</p><h2>Columns</h2><dl>")
    parts += [f"<dt><b>{esc(k)}</b></dt><dd>{esc(v)}</dd>" for k, v in _legend(comparisons).items()]
    parts.append("</dl>")
    for c in comparisons:
        parts.append(f"<h2>{esc(_title(c))}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in columns(c)]
        parts.append("</tr>")
        for r in scheme_rows(c):
            parts.append("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in r) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        parts.append(f"<p><img alt='{esc(Path(p).stem)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
