"""Query distribution: the policy interface, the shared cluster state and the policies."""

from kairos.distributor.base import (
    Decision,
    Policy,
    PolicyContext,
    make_policy,
    policy_class,
    policy_names,
    register,
)
from kairos.distributor.state import ClusterState

__all__ = [
    "ClusterState",
    "Decision",
    "Policy",
    "PolicyContext",
    "make_policy",
    "policy_class",
    "policy_names",
    "register",
]
