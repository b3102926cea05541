"""``kairos plan --ray-cluster`` writes a cluster launcher config that Ray itself accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kairos.catalog import Pool
from kairos.cli.main import cli
from kairos.serving.ray.cluster import node_type_name, ray_cluster_config, to_yaml
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
