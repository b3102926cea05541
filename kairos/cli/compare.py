"""``kairos compare``: KAIROS against the best homogeneous pool and earlier schemes."""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from kairos import limits
from kairos.catalog import check_qos_ms
from kairos.cli.common import (
    BoundedList,
    NameList,
    bounded,
    build_scenario,
    data_options,
    emit_json,
    output_file,
    progress_bar,
    require_one_goal,
    table,
)
from kairos.compare import (
    COMPARE_DEFAULTS,
    SCHEMES,
    CompareSettings,
    Comparison,
    compare,
    compare_for_rate,
    target_schemes,
)
from kairos.errors import ConfigError
from kairos.plots.report import REPORT_SUFFIXES, columns, legend_lines, scheme_rows
from kairos.profiles import default_profiles, load_profiles
from kairos.scenario import Scenario
from kairos.sim.capacity import Measurer
from kairos.sim.parallel import BACKENDS, Parallelism, make_executor

F = TypeVar("F", bound=Callable[..., Any])
PARALLEL_DEFAULTS = Parallelism()


def parallel_options(func: F) -> F:
    """--jobs and --backend: where the capacity searches run (defaults from Parallelism)."""
    func = click.option(
        "--backend",
        type=click.Choice(BACKENDS.names()),
        default=PARALLEL_DEFAULTS.backend,
        show_default=True,
        help="Where the simulations run.",
    )(func)
    return click.option(
        "--jobs",
        type=int,
        default=PARALLEL_DEFAULTS.jobs,
        help="Simulations run at once (default: one per CPU core); results do not depend on it.",
    )(func)


def parse_floats(text: str, what: str, option: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            v = float("nan")
        if not math.isfinite(v) or v <= 0:
            raise ConfigError(
                f"{what} {part.strip()!r} is not a positive number.",
                f"pass {option} as a positive number or a comma-separated list like 1.5,2.5,4.",
            )
        values.append(v)
    return values


def parse_schemes(text: str) -> tuple[str, ...]:
    return SCHEMES.check_all(s.strip() for s in text.split(",") if s.strip())


def run_comparisons(
    models: Sequence[str],
    levels: Sequence[float],
    qos_list: Sequence[float | None],
    settings: CompareSettings,
    *,
    for_rate: bool = False,
    batch_mix: str = "production",
    profiles_path: str | None = None,
    prices_path: str | None = None,
    show_progress: bool = True,
    parallelism: Parallelism | None = None,
) -> list[Comparison]:
    """One comparison per (model, level, QoS) combination, with a progress bar; a level is a
    budget in $/h, or a target rate in q/s with ``for_rate``."""
    combos = [(m, b, q) for m in models for b in levels for q in qos_list]
    scenarios = {
        (m, q): build_scenario(m, q, batch_mix, profiles_path, prices_path)
        for m in models
        for q in qos_list
    }
    results = []
    names = target_schemes(settings) if for_rate else settings.schemes
    run = compare_for_rate if for_rate else compare
    with (
        progress_bar(show_progress, "compare", total=len(combos) * len(names)) as bar,
        make_executor(parallelism) as executor,
    ):
        for m, b, q in combos:
            bar.set_postfix_str(f"{m} {b:g} q/s" if for_rate else f"{m} ${b:g}/h")
            scenario: Scenario = scenarios[(m, q)]
            results.append(
                run(
                    scenario,
                    b,
                    settings,
                    progress=lambda _n: bar.update(1),
                    measurer=Measurer(executor),
                )
            )
    return results


def render_table(c: Comparison) -> str:
    head = f"{c.model}: {c.level_text}, QoS p99 {c.qos_ms:g} ms"
    return head + "\n" + table(scheme_rows(c), columns(c))


def render_legend(for_rate: bool = False) -> str:
    return "Columns:\n" + "\n".join(f"  {line}" for line in legend_lines(for_rate))


def write_outputs(
    comparisons: list[Comparison], plot: str | None, report: str | None, settings_info: dict
) -> list[Path]:
    """Write the plot (and its CDF companion) and the report; return the files written."""
    from kairos.plots.compare_plots import plot_latency_cdfs, plot_throughput
    from kairos.plots.report import write_report

    written: list[Path] = []
    plots: list[Path] = []
    if plot or report:
        base = Path(plot) if plot else Path(report).with_suffix(".png")  # type: ignore[arg-type]
        base.parent.mkdir(parents=True, exist_ok=True)
        plots = [
            plot_throughput(comparisons, base),
            plot_latency_cdfs(comparisons, base.with_name(base.stem + "_cdf.png")),
        ]
        written += plots
    if report:
        rpath = Path(report)
        rpath.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_report(comparisons, rpath, plots, settings_info))
    return written


def settings_info(
    models,
    levels,
    qos_list,
    settings: CompareSettings,
    batch_mix,
    profiles_path,
    prices_path,
    for_rate: bool = False,
) -> dict[str, str]:
    return {
        "command": "kairos " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "models": ",".join(models),
        ("target_qps" if for_rate else "budget_per_hr"): ",".join(f"{b:g}" for b in levels),
        "qos_ms": ",".join("model default" if q is None else f"{q:g}" for q in qos_list),
        "batch_mix": batch_mix,
        "profiles": profiles_path or "built-in (KAIROS paper AWS measurements)",
        "prices": prices_path or "built-in (AWS on-demand prices)",
        "queries_per_trial": str(settings.queries),
        "precision": str(settings.precision),
        "seed": str(settings.seed),
        "top_k": str(settings.top_k),
        "ribbon_max_explorations": str(settings.ribbon_max_explorations),
        "oracle_max_simulations": str(settings.oracle_max_simulations),
        "cdf_queries": str(settings.cdf_queries),
        "schemes": ",".join(target_schemes(settings) if for_rate else settings.schemes),
    }


@click.command()
@click.option(
    "--model",
    "-m",
    "model_text",
    type=NameList(),
    default="rm2",
    show_default=True,
    help="Model, comma-separated models, or 'all'.",
)
@click.option(
    "--budget-per-hr",
    "budget_text",
    type=BoundedList(limits.BUDGET_PER_HR),
    default=None,
    help="Budget in $/h, or a comma-separated list (1.5,2.5,4): schemes compete on throughput.",
)
@click.option(
    "--target-qps",
    "target_text",
    type=BoundedList(limits.RATE_QPS),
    default=None,
    help="Rate to hold in q/s, or a list (instead of --budget-per-hr): schemes compete on cost.",
)
@click.option(
    "--qos-ms",
    "qos_text",
    type=BoundedList(limits.QOS_MS),
    default=None,
    help="p99 target in ms, or a list (default: each model's built-in target).",
)
@data_options
@click.option(
    "--queries",
    type=bounded(limits.TRIAL_QUERIES),
    default=COMPARE_DEFAULTS.queries,
    show_default=True,
    help="Measured queries per capacity trial (at least; more when QoS is long).",
)
@click.option(
    "--precision",
    type=bounded(limits.PRECISION),
    default=COMPARE_DEFAULTS.precision,
    show_default=True,
)
@click.option("--seed", type=bounded(limits.SEED), default=COMPARE_DEFAULTS.seed, show_default=True)
@click.option(
    "--top-k",
    type=bounded(limits.TOP_K),
    default=COMPARE_DEFAULTS.top_k,
    show_default=True,
    help="Pools (by bound) drs and clockwork simulate.",
)
@click.option(
    "--schemes",
    "schemes_text",
    default=",".join(COMPARE_DEFAULTS.schemes),
    show_default=True,
    help="Under --target-qps the default is every scheme with a target form (docs/allocator.md).",
)
@parallel_options
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--plot", type=output_file(".png"), default=None, help="Write FILE.png (and FILE_cdf.png)."
)
@click.option(
    "--report",
    type=output_file(*REPORT_SUFFIXES),
    default=None,
    help="Write FILE.html or FILE.md (the plots go next to it).",
)
def compare_cmd(
    model_text,
    budget_text,
    target_text,
    qos_text,
    batch_mix,
    profiles_path,
    prices_path,
    queries,
    precision,
    seed,
    top_k,
    schemes_text,
    jobs,
    backend,
    as_json,
    plot,
    report,
):
    """Compare KAIROS with the best homogeneous pool, RIBBON, DRS, Clockwork and an oracle:
    throughput within --budget-per-hr, or the cost of holding --target-qps."""
    require_one_goal(
        "compare",
        budget_text,
        target_text,
        "throughput for B $/h",
        "what each scheme pays to hold R q/s",
    )
    for_rate = target_text is not None
    models = resolve_models(model_text, profiles_path)
    levels = (
        parse_floats(target_text, "target rate", "--target-qps")
        if for_rate
        else parse_floats(budget_text, "budget", "--budget-per-hr")
    )
    qos_list: list[float | None] = (
        [check_qos_ms(q) for q in parse_floats(qos_text, "QoS target", "--qos-ms")]
        if qos_text
        else [None]
    )
    parallelism = Parallelism(backend=backend, jobs=jobs)
    settings = CompareSettings(
        queries=queries,
        precision=precision,
        seed=seed,
        top_k=top_k,
        schemes=parse_schemes(schemes_text),
    )
    if for_rate:
        target_schemes(settings)  # names without a target form fail before any work
    comparisons = run_comparisons(
        models,
        levels,
        qos_list,
        settings,
        for_rate=for_rate,
        batch_mix=batch_mix,
        profiles_path=profiles_path,
        prices_path=prices_path,
        show_progress=not as_json,
        parallelism=parallelism,
    )
    info = settings_info(
        models, levels, qos_list, settings, batch_mix, profiles_path, prices_path, for_rate
    )
    written = write_outputs(comparisons, plot, report, info)
    if as_json:
        if len(comparisons) == 1:
            emit_json(comparisons[0].as_dict())
        else:
            emit_json({"comparisons": [c.as_dict() for c in comparisons]})
        return
    for c in comparisons:
        click.echo(render_table(c) + "\n")
    click.echo(render_legend(for_rate) + "\n")
    for p in written:
        click.echo(f"wrote {p}")


def resolve_models(text: str, profiles_path: str | None) -> list[str]:
    if text != "all":
        return [m.strip() for m in text.split(",") if m.strip()]
    ps = load_profiles(profiles_path) if profiles_path else default_profiles()
    return sorted(ps.model_names)


compare_cmd.name = "compare"
COMMANDS = [compare_cmd]
