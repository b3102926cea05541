"""Write a wider instance catalog (profiles + prices CSVs) derived from the built-in profiles.

The catalog is the variant catalog the benchmarks and docs use (``variant_scenario`` in
``tests/allocator/synthetic.py``): the 4 measured types plus faster and slower variants
``TYPE~vk`` of each, at a speed factor drawn log-normally around 1 and a price that scales
with the speed to a random power, so some variants are better value than their parent and
some worse. The draws depend only on the seed and the parent types, which every built-in
model shares, so one price list serves every model; the script checks that it does.
Deterministic: the same arguments write byte-identical files.

    python scripts/wide_catalog.py --types 8 --out /tmp/cat8
    kairos compare --model dien --budget-per-hr 2.5 \\
        --profiles /tmp/cat8/profiles.csv --prices /tmp/cat8/prices.csv

``--types 12 --seed 0`` is "dien on the built-in catalog widened to 12 types" (docs/allocator.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.* when run as a file
from tests.allocator.synthetic import variant_scenario  # noqa: E402

MODELS = ("rm2", "wnd", "mtwnd", "dien", "ncf")


def write(n_types: int, seed: int, out: Path, models: tuple[str, ...] = MODELS) -> None:
    """Write ``out/profiles.csv`` (every model) and ``out/prices.csv`` (one shared list)."""
    out.mkdir(parents=True, exist_ok=True)
    prices: dict[str, float] | None = None
    lines = ["model,instance_type,batch_size,latency_ms"]
    for model in models:
        scenario = variant_scenario(model, n_types, seed=seed)
        these = {t: scenario.prices.price_per_hr(t) for t in scenario.instance_types}
        if prices is not None and these != prices:
            sys.exit(f"error: model {model!r} draws other prices; pass --models one at a time.")
        prices = these
        for t in scenario.instance_types:
            prof = scenario.profiles.get(t)
            for b, row in zip(prof.batch_sizes.tolist(), prof.quantiles_ms, strict=True):
                lines.extend(f"{model},{t},{int(b)},{v!r}" for v in row.tolist())
    assert prices is not None
    (out / "profiles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    price_lines = ["instance_type,price_per_hr"] + [f"{t},{p!r}" for t, p in prices.items()]
    (out / "prices.csv").write_text("\n".join(price_lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", type=int, default=8, help="types in the catalog (>= 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, required=True, help="folder for the two CSVs")
    args = parser.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    write(args.types, args.seed, args.out, models)
    print(f"wrote {args.out / 'profiles.csv'} and {args.out / 'prices.csv'}")


if __name__ == "__main__":
    main()
