"""``kairos advise``: the pool that fits the traffic a running router observes."""

from __future__ import annotations

import click

from kairos.cli.common import emit_json, table


@click.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The router.")
@click.option("--budget-per-hr", type=float, required=True, help="Hourly budget in dollars.")
@click.option("--profiles", "profiles_path", type=click.Path(), default=None)
@click.option("--prices", "prices_path", type=click.Path(), default=None)
@click.option("--api-token", envvar="KAIROS_API_TOKEN", default=None)
@click.option("--queries", type=int, default=2000, show_default=True, help="Per simulated trial.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def advise(
    url: str,
    budget_per_hr: float,
    profiles_path: str | None,
    prices_path: str | None,
    api_token: str | None,
    queries: int,
    seed: int,
    as_json: bool,
) -> None:
    """Compare the running pool with the best pool for the observed traffic."""
    from kairos.runtime.advise import advise as make_advice
    from kairos.runtime.advise import fetch_traffic, observed_scenario

    view = fetch_traffic(url, api_token)
    scenario = observed_scenario(view, profiles_path, prices_path)
    advice = make_advice(
        view, scenario, url, budget_per_hr=budget_per_hr, queries=queries, seed=seed
    )
    if as_json:
        emit_json(advice.as_dict())
        return
    click.echo(
        f"observed at {url}: {advice.rate_qps:.1f} q/s, mean batch {advice.mean_batch:.0f} "
        f"(model {view['model']}, QoS {view['qos_ms']:g} ms, policy {view['policy']})"
    )
    rows = [
        ["running", str(advice.running_pool), f"{advice.running_cost_per_hr:.3f}",
         f"{advice.running_allowable_qps:.1f}"],
        ["proposed", str(advice.proposed_pool), f"{advice.proposed_cost_per_hr:.3f}",
         f"{advice.proposed_allowable_qps:.1f}"],
    ]  # fmt: skip
    click.echo(table(rows, ["", "pool", "$/h", "allowable qps (observed mix)"]))
    if advice.changed:
        click.echo(f"predicted gain: {advice.gain:.2f}x; apply with: {advice.scale_command}")
    else:
        click.echo("the running pool is already the best for this traffic.")


COMMANDS = [advise]
