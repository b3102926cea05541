"""Router settings and the serve/loadgen command lines reject bad input with a fix hint."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kairos.catalog import Pool
from kairos.cli.main import cli
from kairos.cli.serve import _parse_workers
from kairos.errors import ConfigError
from kairos.runtime.router import RouterConfig


def config(**overrides: object) -> RouterConfig:
    base: dict[str, object] = {"model": "dien", "pool": Pool.parse("r5n.large=2")}
    return RouterConfig(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"max_queue": 0}, "--max-queue"),
        ({"time_scale": -1.0}, "--time-scale"),
        ({"workers": ("127.0.0.1:1",)}, "1 worker addresses for a pool of 2"),
        ({"transport": "http3"}, "transport 'http3'"),
        ({"timeout_floor_s": 0.0}, "--timeout-floor-s"),
        ({"api_token": ""}, "--api-token is empty"),
    ],
)
def test_router_config_errors_name_the_setting(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        config(**overrides).check()
    assert "To fix:" in str(err.value)


def test_workers_option_parses_local_and_addresses() -> None:
    assert _parse_workers("local") is None
    assert _parse_workers("127.0.0.1:7001, 127.0.0.1:7002") == ("127.0.0.1:7001", "127.0.0.1:7002")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        _parse_workers("127.0.0.1")


def test_loadgen_without_rate_or_search_is_a_usage_error() -> None:
    from kairos.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["loadgen", "--model", "dien"])
    assert exit_.value.code == 2


def test_serve_help_lists_the_protocol_options() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--workers", "--max-queue", "--api-token", "--transport", "--time-scale"):
        assert option in result.output
