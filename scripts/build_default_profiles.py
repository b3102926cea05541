"""Build kairos/data/default_profiles.csv.gz from the KAIROS paper's AWS measurements.

Input: ``kairos_aws_latency.csv.gz`` (one row per measured request; columns instance_type,
model, batch_size, run, inference_ms, load_ms), published with the KAIROS paper (HPDC 2023,
MIT license, copyright 2023 Baolin Li). Not committed to this repository.

For each (model, instance_type, batch_size) series: service time = inference_ms + load_ms,
drop the series' largest sample (the warm-up outlier, as the paper's artifact does), then
keep 21 evenly spaced quantiles (0%, 5%, ..., 100%). Output rows use the ordinary profile
format ``model,instance_type,batch_size,latency_ms`` (21 rows per cell), so the built-in table
loads through the same code path as user profiles.

Usage: python scripts/build_default_profiles.py [RAW_CSV_GZ] [OUT_CSV_GZ]
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

QUANTILES = np.linspace(0.0, 1.0, 21)
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW = ROOT.parent / "shared" / "data" / "kairos_aws_latency.csv.gz"
DEFAULT_OUT = ROOT / "kairos" / "data" / "default_profiles.csv.gz"


def build(raw: Path, out: Path) -> int:
    series: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    with gzip.open(raw, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["model"], row["instance_type"], int(row["batch_size"]))
            series[key].append(float(row["inference_ms"]) + float(row["load_ms"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "instance_type", "batch_size", "latency_ms"])
    rows = 0
    for model, itype, batch in sorted(series):
        values = np.sort(np.asarray(series[(model, itype, batch)]))[:-1]
        for q in np.quantile(values, QUANTILES):
            w.writerow([model, itype, batch, f"{q:.4f}"])
            rows += 1
    # mtime=0 keeps the output byte-identical across rebuilds.
    with gzip.GzipFile(out, "wb", mtime=0) as fh:
        fh.write(buf.getvalue().encode("utf-8"))
    return rows


if __name__ == "__main__":
    raw = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RAW
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUT
    n = build(raw, out)
    print(f"wrote {n} rows to {out}")
