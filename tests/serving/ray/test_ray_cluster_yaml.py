"""``kairos plan --ray-cluster`` writes a cluster launcher config that Ray itself accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kairos.catalog import Pool
from kairos.cli.main import cli
from kairos.serving.ray.cluster import (
    ROUTER_TYPE,
    node_type_name,
    ray_cluster_config,
    to_yaml,
    write_ray_cluster,
)
from kairos.serving.ray.placement import ROUTER_LABEL, ROUTER_RESOURCE
from kairos.serving.ray.pool import TYPE_LABEL, type_resource


def test_plan_writes_a_config_that_validates_against_rays_schema(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kairos[ray]')")
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "cluster.yaml"
    result = CliRunner().invoke(
        cli,
        [
            "plan",
            "--model",
            "dien",
            "--budget-per-hr",
            "2.5",
            "--ray-cluster",
            str(out),
            # The bound's pick (g4dn.xlarge=2,r5n.large=9: two types) goes through the same
            # writer as a verified one; simulating 5 pools first cost seconds of CPU here.
            "--no-verify",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    chosen = Pool.parse(json.loads(result.stdout)["pool"])
    config = yaml.safe_load(out.read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))  # Ray's own checks beyond the schema
    types = config["available_node_types"]
    assert config["head_node_type"] in types and config["provider"]["type"] == "aws"
    for t in chosen.types:
        node = types[node_type_name(t)]
        assert node["node_config"]["InstanceType"] == t
        assert node["min_workers"] == node["max_workers"] == chosen.count(t)
        assert node["resources"] == {type_resource(t): 1}
        assert node["labels"] == {TYPE_LABEL: t}
    assert len(types) == len(chosen.types) + 1
    assert config["max_workers"] == chosen.size


def test_yaml_round_trips_the_config() -> None:
    yaml = pytest.importorskip("yaml")
    config = ray_cluster_config(Pool.parse("g4dn.xlarge=2,t3.xlarge=1"))
    assert yaml.safe_load("\n".join(to_yaml(config))) == config


def test_a_celled_cluster_has_one_router_node_per_cell(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kairos[ray]')")
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    pool = Pool.parse("g4dn.xlarge=2,r5n.large=9")
    out = write_ray_cluster(tmp_path / "cells.yaml", pool, "dien", cells=2)
    text = out.read_text()
    config = yaml.safe_load(text)
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))
    routers = config["available_node_types"][ROUTER_TYPE]
    assert routers["min_workers"] == routers["max_workers"] == 2
    assert routers["resources"] == {ROUTER_RESOURCE: 1}
    assert routers["labels"] == {ROUTER_LABEL[0]: ROUTER_LABEL[1]}
    assert config["max_workers"] == pool.size + 2
    assert "--cells 2 --host 0.0.0.0" in text and "--backend ray --address auto" in text
    # Without cells: no router node (the detached router goes to the head).
    assert ROUTER_TYPE not in ray_cluster_config(pool)["available_node_types"]
