"""The distribution-policy interface and its registry.

A policy is called by a driver (simulator or live router) after every event (a query arrived,
an instance finished) with the shared ``ClusterState``. It returns decisions: ``(qid,
instance)`` pairs, each starting a queued query on an idle instance. The driver applies them
in order. Policies get everything else (profiles, QoS, randomness) from ``PolicyContext`` at
construction, so no policy reads a clock, a global RNG or a socket.

Adding a policy is one file in ``kairos/distributor/policies/``: a ``Policy`` subclass with a
``name`` and the ``@register`` decorator. The package is scanned on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from kairos.distributor.state import ClusterState
from kairos.errors import PolicyError
from kairos.profiles import ModelProfiles
from kairos.registry import Registry
from kairos.workload import Query

Decision = tuple[int, int]  # (qid, instance index)


@dataclass(frozen=True, eq=False)
class PolicyContext:
    """What a policy knows besides the live state: the model's profiles, QoS and an RNG.

    ``instance_types`` lists one type per instance (index = instance id), in the same order
    as the driver's ``ClusterState``.
    """

    model: str
    qos_ms: float
    profiles: ModelProfiles
    instance_types: tuple[str, ...]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    _mean_cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.instance_types))

    @property
    def qos_s(self) -> float:
        return self.qos_ms / 1000.0

    def est_ms(self, batch_size: int) -> np.ndarray:
        """Mean service time (ms) of a ``batch_size`` query on each type in ``type_names``.

        Cached per batch size: a policy asks this on every decision.
        """
        row = self._mean_cache.get(batch_size)
        if row is None:
            row = self.profiles.mean_table_ms(self.type_names, np.array([batch_size]))[:, 0]
            row.setflags(write=False)
            self._mean_cache[batch_size] = row
        return row

    def prime(self, batch_sizes: np.ndarray) -> None:
        """Fill the ``est_ms`` cache for many batch sizes in one vectorised pass."""
        todo = np.array([b for b in np.unique(batch_sizes).tolist() if b not in self._mean_cache])
        if todo.size == 0:
            return
        table = self.profiles.mean_table_ms(self.type_names, todo)
        table.setflags(write=False)
        for k, b in enumerate(todo.tolist()):
            self._mean_cache[b] = table[:, k]

    def est_s(self, type_index: int, batch_size: int) -> float:
        return float(self.est_ms(batch_size)[type_index]) / 1000.0


class Policy(ABC):
    """Decides which queued queries start on which idle instances."""

    name: ClassVar[str] = ""

    def __init__(self, ctx: PolicyContext, **options: Any) -> None:
        if options:
            raise PolicyError(
                f"policy {self.name!r} has no option(s) {', '.join(options)}.",
                "drop the options or pick a policy that accepts them.",
            )
        self.ctx = ctx

    @abstractmethod
    def decide(self, state: ClusterState) -> Sequence[Decision]:
        """Return ``(qid, instance)`` pairs to start now; instances must be in ``state.idle``."""

    def on_arrival(self, query: Query, state: ClusterState) -> None:  # noqa: B027
        """Called once per query as it enters the queue (before ``decide``)."""

    def on_finish(self, query: Query, instance: int, state: ClusterState) -> None:  # noqa: B027
        """Called once per completed query (before ``decide``)."""


def _discover() -> None:
    package = importlib.import_module("kairos.distributor.policies")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


POLICIES: Registry[type[Policy]] = Registry(
    "policy", "pass --policy with one of the known names.", PolicyError, _discover
)


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy selectable by its ``name``."""
    if not cls.name:
        raise PolicyError(f"policy class {cls.__name__} has no name.", "set name = '...'.")
    return POLICIES.add(cls.name, cls)


def policy_names() -> tuple[str, ...]:
    return tuple(sorted(POLICIES.names()))


def policy_class(name: str) -> type[Policy]:
    return POLICIES.get(name)


def make_policy(name: str, ctx: PolicyContext, **options: Any) -> Policy:
    return policy_class(name)(ctx, **options)
