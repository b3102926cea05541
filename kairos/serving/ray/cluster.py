"""From a planned pool to a Ray cluster on AWS: the cluster launcher's config file.

``kairos plan ... --ray-cluster FILE.yaml`` writes it for the chosen pool; ``ray up FILE.yaml``
then rents the machines. It has a head node (where ``kairos serve --backend ray --detach``
puts the router) and one entry in ``available_node_types`` per instance type of the pool:

* ``node_config.InstanceType``: the AWS instance type itself;
* ``resources``: one unit of ``kairos/TYPE`` (resource placement, the default) and
  ``labels``: ``kairos.io/instance-type: TYPE`` (label placement), so either placement finds
  the node; Ray adds the type's CPUs, GPUs and memory by itself;
* ``min_workers = max_workers = count``: the pool is rented whole and kept at its size (the
  autoscaler replaces a lost node; ``kairos scale`` changes the service, and a new count here
  with ``ray up`` again changes the machines).

A celled plan (``kairos plan --cells N --ray-cluster FILE``) adds one router node per cell
(``kairos-router``: a few cores, no accelerator), each offering one unit of ``kairos/router``
and the label ``kairos.io/node-role: router``, where ``kairos serve --cells N --backend ray``
places each cell's router; the balancer runs where ``kairos serve`` runs (the head).

The file is YAML (every string written in double quotes, so types such as ``g4dn.xlarge``
stay strings); a test validates it against the schema Ray ships for its autoscaler config.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kairos.catalog import Pool
from kairos.errors import ConfigError
from kairos.serving.ray.placement import ROUTER_LABEL, ROUTER_RESOURCE, TYPE_LABEL, type_resource
from kairos.serving.ray.session import NICENESS_VARIABLE

HEAD_TYPE = "kairos-head"
ROUTER_TYPE = "kairos-router"
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RayClusterSettings:
    """What the generated config assumes besides the pool (edit the file for more)."""

    cluster_name: str = "kairos"
    region: str = "us-east-1"  # the AWS prices the built-in data uses are us-east-1's
    head_instance_type: str = "m5.large"  # runs the router: a few cores, no accelerator
    # Cells (kairos serve --cells N --backend ray): one router node per cell, of this type.
    router_nodes: int = 0
    router_instance_type: str = "m5.large"
    ssh_user: str = "ubuntu"
    # How each node gets Kairos (replace with your own wheel or repository if needed).
    install_command: str = "python -m pip install 'kairos[ray]'"


def node_type_name(instance_type: str) -> str:
    return f"kairos-{instance_type}"


def ray_cluster_config(pool: Pool, settings: RayClusterSettings | None = None) -> dict[str, Any]:
    """The cluster launcher config (a dict) that rents ``pool`` on AWS."""
    s = settings or RayClusterSettings()
    if pool.size < 1:
        raise ConfigError(f"pool {pool} is empty.", "plan a pool with at least one instance.")
    node_types: dict[str, Any] = {
        HEAD_TYPE: {"node_config": {"InstanceType": s.head_instance_type}, "resources": {}}
    }
    for t in pool.types:
        n = pool.count(t)
        node_types[node_type_name(t)] = {
            "node_config": {"InstanceType": t},
            "resources": {type_resource(t): 1},
            "labels": {TYPE_LABEL: t},
            "min_workers": n,
            "max_workers": n,
        }
    if s.router_nodes > 0:
        key, value = ROUTER_LABEL
        node_types[ROUTER_TYPE] = {
            "node_config": {"InstanceType": s.router_instance_type},
            "resources": {ROUTER_RESOURCE: 1},  # one router a node
            "labels": {key: value},
            "min_workers": s.router_nodes,
            "max_workers": s.router_nodes,
        }
    return {
        "cluster_name": s.cluster_name,
        "max_workers": pool.size + s.router_nodes,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {"type": "aws", "region": s.region, "cache_stopped_nodes": False},
        "auth": {"ssh_user": s.ssh_user},
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        "setup_commands": [s.install_command],
        # Ray's own start commands, with its workers at normal priority (ray_session.py).
        "head_start_ray_commands": [
            "ray stop",
            f"ulimit -n 65536; {NICENESS_VARIABLE}=0 ray start --head --port=6379 "
            "--object-manager-port=8076 --autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [
            "ray stop",
            f"ulimit -n 65536; {NICENESS_VARIABLE}=0 ray start --address=$RAY_HEAD_IP:6379 "
            "--object-manager-port=8076",
        ],
    }


def to_yaml(value: Any, indent: int = 0) -> list[str]:
    """Block-style YAML lines for dicts, lists and scalars (strings double-quoted)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            k = key if _PLAIN_KEY.match(key) else json.dumps(key)
            if isinstance(item, dict | list) and item:
                lines += [f"{pad}{k}:", *to_yaml(item, indent + 1)]
            else:
                lines.append(f"{pad}{k}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                raise ConfigError("nested lists are not written.", "report a bug.")
            lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [pad + _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value)  # JSON scalars are YAML scalars; bools are true/false


def write_ray_cluster(
    path: str | Path,
    pool: Pool,
    model: str,
    settings: RayClusterSettings | None = None,
    cells: int | None = None,
) -> Path:
    """Write the config for ``pool`` serving ``model`` to ``path`` (with ``cells``: as that
    many cells, one router node each); return the path."""
    s = settings or RayClusterSettings(cluster_name=f"kairos-{model}")
    if cells is not None:
        s = replace(s, router_nodes=cells)
    config = ray_cluster_config(pool, s)
    name = Path(path).name
    serve = f"kairos serve --model {model} --pool {pool} --backend ray --address auto"
    head = [
        f"# Ray cluster launcher config (AWS) for the Kairos pool {pool} serving {model}.",
        "# Written by 'kairos plan --ray-cluster'. Rent it, then serve on it (docs/ray.md):",
        f"#   ray up {name}",
        f"#   ray exec {name} '{serve} --detach'",
    ]
    if cells is not None:  # the cell set and its balancer run in the foreground: in tmux
        head[1] = (
            "# Written by 'kairos plan --cells --ray-cluster'. Rent it, then serve (docs/cells.md):"
        )
        head[3] = (
            f"#   ray exec --tmux {name} '{serve} --cells {cells} --host 0.0.0.0 --port 8000 "
            "--api-token TOKEN'"
        )
    out = Path(path)
    try:
        out.write_text("\n".join(head + to_yaml(config)) + "\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the Ray cluster config to {str(path)!r} ({exc.strerror}).",
            "pass a path in a directory you can write to.",
        ) from None
    return out
