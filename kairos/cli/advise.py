"""``kairos advise``: the pool that fits the traffic a running router observes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kairos import limits
from kairos.cli.common import bounded, emit_json, require_one_goal, table
from kairos.control.advise import ADVISE_QUERIES
from kairos.protocol.api import DEFAULT_URL

if TYPE_CHECKING:
    from kairos.control.advise import Advice


@click.command()
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The router.")
@click.option(
    "--budget-per-hr",
    type=bounded(limits.BUDGET_PER_HR),
    default=None,
    help="Propose the best pool for this hourly budget in dollars.",
)
@click.option(
    "--target-qps",
    type=bounded(limits.RATE_QPS),
    default=None,
    help="Propose the cheapest pool that holds this rate (instead of --budget-per-hr).",
)
@click.option("--profiles", "profiles_path", type=click.Path(), default=None)
@click.option("--prices", "prices_path", type=click.Path(), default=None)
@click.option("--api-token", envvar="KAIROS_API_TOKEN", default=None)
@click.option(
    "--queries",
    type=bounded(limits.TRIAL_QUERIES),
    default=ADVISE_QUERIES,
    show_default=True,
    help="Per simulated trial.",
)
@click.option("--seed", type=bounded(limits.SEED), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def advise(
    url: str,
    budget_per_hr: float | None,
    target_qps: float | None,
    profiles_path: str | None,
    prices_path: str | None,
    api_token: str | None,
    queries: int,
    seed: int,
    as_json: bool,
) -> None:
    """Compare the running pool with the best pool for the observed traffic (within a budget)
    or the cheapest that holds a target rate."""
    from kairos.client.admin import fetch_traffic
    from kairos.control.advise import advise as make_advice
    from kairos.control.advise import observed_scenario

    # Before asking the router anything (advise() checks this too, for library callers).
    require_one_goal(
        "advise",
        budget_per_hr,
        target_qps,
        "the best pool for B $/h",
        "the cheapest pool that holds R q/s",
    )
    view = fetch_traffic(url, api_token)
    scenario = observed_scenario(view, profiles_path, prices_path)
    advice = make_advice(
        view,
        scenario,
        url,
        budget_per_hr=budget_per_hr,
        target_qps=target_qps,
        queries=queries,
        seed=seed,
    )
    if as_json:
        emit_json(advice.as_dict())
        return
    click.echo(
        f"observed at {url}: {advice.rate_qps:.1f} q/s, mean batch {advice.mean_batch:.0f} "
        f"(model {view['model']}, QoS {view['qos_ms']:g} ms, policy {view['policy']})"
    )
    rows = [
        [
            "running",
            str(advice.running_pool),
            f"{advice.running_cost_per_hr:.3f}",
            f"{advice.running_allowable_qps:.1f}",
        ],
        [
            "proposed",
            str(advice.proposed_pool),
            f"{advice.proposed_cost_per_hr:.3f}",
            f"{advice.proposed_allowable_qps:.1f}",
        ],
    ]
    click.echo(table(rows, ["", "pool", "$/h", "allowable qps (observed mix)"]))
    click.echo(verdict(advice))


def verdict(advice: Advice) -> str:
    """One line: what the proposal changes, and the command that applies it."""
    apply = f"; apply with: {advice.scale_command}" if advice.changed else ""
    change = advice.cost_change_per_hr
    bill = f"saves ${-change:.3f}/h" if change < 0 else f"costs ${change:.3f}/h more"
    if advice.target_qps is not None:
        rate = f"{advice.target_qps:g} q/s"
        if advice.provisioning == "under":
            return f"under-provisioned: the running pool misses {rate}; the proposal {bill}{apply}"
        if advice.provisioning == "over":
            return f"over-provisioned for {rate}: the proposal holds it and {bill}{apply}"
        return f"the running pool is already the cheapest that holds {rate}."
    if advice.changed:
        return f"predicted gain: {advice.gain:.2f}x ({bill}){apply}"
    return "the running pool is already the best for this traffic."


COMMANDS = [advise]
