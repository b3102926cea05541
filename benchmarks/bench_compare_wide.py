"""`kairos compare` on a wider catalog than the built-in 4 types: wall time per scheme, and the
exact oracle on the 12-type catalog.

The catalogs are the variant catalogs ``scripts/wide_catalog.py`` writes (the built-in
types plus faster and slower variants at other prices), loaded back from their CSVs exactly
as ``kairos compare --profiles/--prices`` loads them. Sections (printed as measured in this
run; nothing is asserted):

- ``compare``: every scheme of ``kairos compare`` on the 8-type catalog, per model, with
  ``--jobs`` workers (default 2, the target machine's cores): seconds per scheme, the total,
  and the total over the 2-minute target.
- ``oracle12``: the exact oracle on dien's 12-type catalog ($2.5/h): pools simulated, whether
  it proved its answer (``exact``), seconds, and seconds over the 1-minute target.

    python benchmarks/bench_compare_wide.py [--sections compare,oracle12] [--models dien]
        [--jobs 2] [--max-simulations 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kairos.allocator import exact_oracle
from kairos.compare import CompareSettings, compare
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurer
from kairos.sim.parallel import Parallelism, make_executor

ROOT = Path(__file__).resolve().parents[1]


def write(n_types: int, seed: int, out: Path, models: tuple[str, ...] = ("dien",)) -> None:
    """The catalog as a user gets it: written by ``scripts/wide_catalog.py``."""
    script = ROOT / "scripts" / "wide_catalog.py"
    argv = [sys.executable, str(script), "--types", str(n_types), "--seed", str(seed)]
    argv += ["--models", ",".join(models), "--out", str(out)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


COMPARE_TARGET_S = 120.0
ORACLE_TARGET_S = 60.0


def load(folder: Path, model: str) -> Scenario:
    return Scenario.from_files(
        model, profiles_path=str(folder / "profiles.csv"), prices_path=str(folder / "prices.csv")
    )


def bench_compare(folder: Path, models: list[str], jobs: int, budget: float) -> None:
    settings = CompareSettings()
    print(f"kairos compare, 8-type catalog, ${budget:g}/h, {jobs} workers (seconds per scheme)")
    with make_executor(Parallelism(jobs=jobs)) as executor:
        for model in models:
            scenario = load(folder, model)
            marks = [time.perf_counter()]
            times: list[str] = []

            def done(name: str, marks: list[float] = marks, times: list[str] = times) -> None:
                marks.append(time.perf_counter())
                times.append(f"{name} {marks[-1] - marks[-2]:.1f}")

            c = compare(scenario, budget, settings, progress=done, measurer=Measurer(executor))
            total = time.perf_counter() - marks[0]
            oracle = c.scheme("oracle")
            print(
                f"  {model:6s} total {total:6.1f} s  ratio to the 2-minute target "
                f"{total / COMPARE_TARGET_S:.2f}  ({', '.join(times)}; the rest is the CDF run)"
            )
            print(
                f"         ribbon {c.scheme('ribbon').pool} {c.scheme('ribbon').allowable_qps:.1f}"
                f" q/s in {c.scheme('ribbon').explorations} explorations; oracle "
                f"{oracle.pool} {oracle.allowable_qps:.1f} q/s ({oracle.note})"
            )


def bench_oracle12(folder: Path, jobs: int, max_simulations: int) -> None:
    scenario = load(folder, "dien")
    with make_executor(Parallelism(jobs=jobs)) as executor:
        t0 = time.perf_counter()
        found = exact_oracle(
            scenario, 2.5, measurer=Measurer(executor), max_simulations=max_simulations
        )
        took = time.perf_counter() - t0
    print(
        f"exact oracle, dien, 12-type catalog, $2.5/h, {jobs} workers: {found.pool} "
        f"{found.allowable_qps:.1f} q/s, simulated {found.explorations} ({found.searched} in "
        f"full) of {found.pools_within_budget or 0:,.0f}, exact={found.exact}, {took:.0f} s, "
        f"ratio to the 1-minute target {took / ORACLE_TARGET_S:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="compare,oracle12")
    parser.add_argument("--models", default="dien")
    parser.add_argument("--budget-per-hr", type=float, default=2.5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-simulations", type=int, default=2000)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "compare" in sections:
            models = [m for m in args.models.split(",") if m]
            write(8, 0, Path(tmp) / "cat8", tuple(models))
            bench_compare(Path(tmp) / "cat8", models, args.jobs, args.budget_per_hr)
        if "oracle12" in sections:
            write(12, 0, Path(tmp) / "cat12", ("dien",))
            bench_oracle12(Path(tmp) / "cat12", args.jobs, args.max_simulations)


if __name__ == "__main__":
    main()
