"""The aggregate view of the cells' ``/metrics``: every router's series with a ``cell`` label,
and their sum over the cells as ``cell="all"``.

Prometheus's text format wants each metric family's samples together under one ``# TYPE``
line, so the routers' texts are merged family by family rather than concatenated. Sums are
given for counters, histograms and additive gauges (queue, in flight, workers up, rates,
cost); a ratio (utilisation, a share) has no meaningful sum and is given per cell only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

ALL = "all"
# Gauges that are ratios or targets of one router: summing them over cells means nothing.
NOT_ADDITIVE = re.compile(r"utilisation|utilization|share|fraction|ratio|quantile|_seconds_p")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


@dataclass
class _Family:
    kind: str = "untyped"
    header: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    sums: dict[tuple[str, str], float] = field(default_factory=dict)


def _labelled(name: str, labels: str | None, cell: str) -> str:
    inner = (labels or "{}")[1:-1]
    return f'{name}{{cell="{cell}"{"," + inner if inner else ""}}}'


def aggregate(texts: Sequence[tuple[str, str | None]]) -> str:
    """Merge ``(cell, /metrics text or None when unreachable)`` pairs into one exposition,
    with ``kairos_cell_up`` saying which cells answered."""
    families: dict[str, _Family] = {}
    for cell, text in texts:
        if text is None:
            continue
        current: _Family | None = None
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split()[2]
                current = families.setdefault(name, _Family())
                if line.startswith("# TYPE "):
                    current.kind = line.split()[3]
                if not any(h.startswith(line[:7]) for h in current.header):
                    current.header.append(line)
                continue
            match = _SAMPLE.match(line)
            if match is None or current is None:
                continue
            name, labels, value = match.groups()
            current.samples.append(f"{_labelled(name, labels, cell)} {value}")
            try:
                number = float(value)
            except ValueError:
                continue
            key = (name, labels or "")
            current.sums[key] = current.sums.get(key, 0.0) + number
    lines = [
        "# HELP kairos_cell_up Whether the cell's router answered its /metrics (1) or not (0).",
        "# TYPE kairos_cell_up gauge",
        *(f'kairos_cell_up{{cell="{cell}"}} {int(text is not None)}' for cell, text in texts),
    ]
    for name, family in families.items():
        lines += family.header
        lines += family.samples
        if family.kind == "gauge" and NOT_ADDITIVE.search(name):
            continue
        for (sample, labels), total in family.sums.items():
            shown = "NaN" if math.isnan(total) else repr(total)
            lines.append(f"{_labelled(sample, labels or None, ALL)} {shown}")
    return "\n".join(lines) + "\n"
