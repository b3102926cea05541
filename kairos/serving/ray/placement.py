"""How a Ray instance finds a node of its type (``--ray-placement``, docs/ray.md).

Apart from the Ray pool so that the router's config can check a placement name, and the
cluster file name a node's resource and label, without loading the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kairos.registry import Registry

TYPE_LABEL = "kairos.io/instance-type"
# A router node (``kairos serve --cells --backend ray`` puts each cell's router on one): it
# offers ROUTER_RESOURCE, one unit per router it may host, or carries ROUTER_LABEL.
ROUTER_RESOURCE = "kairos/router"
ROUTER_LABEL = ("kairos.io/node-role", "router")


def type_resource(instance_type: str) -> str:
    """The custom resource a node of ``instance_type`` offers (resource placement)."""
    return f"kairos/{instance_type}"


def _by_resource(instance_type: str) -> dict[str, Any]:
    return {"resources": {type_resource(instance_type): 1}}


def _by_label(instance_type: str) -> dict[str, Any]:
    return {"label_selector": {TYPE_LABEL: instance_type}}


# How an instance of a type finds a node of that type: the actor options it adds.
RAY_PLACEMENTS: Registry[Callable[[str], dict[str, Any]]] = Registry(
    "Ray placement",
    "pass --ray-placement resource (nodes offer the resource kairos/TYPE) or label (nodes "
    f"carry the label {TYPE_LABEL}=TYPE).",
)
RAY_PLACEMENTS.add("resource", _by_resource)
RAY_PLACEMENTS.add("label", _by_label)
