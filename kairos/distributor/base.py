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
import inspect
import math
import numbers
import pkgutil
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from kairos.distributor.state import ClusterState
from kairos.errors import PolicyError
from kairos.profiles import ModelProfiles
from kairos.registry import Registry
from kairos.workload import Query

Decision = tuple[int, int]  # (qid, instance index)


class BatchTable:
    """A dense ``[batch, type]`` float table filled on first use: NaN rows are not computed
    yet; ``fill(batches)`` gives the missing rows. It grows by doubling, so a lookup is one
    fancy index once the batch sizes in use have been seen."""

    def __init__(self, n_types: int, fill: Callable[[np.ndarray], np.ndarray]) -> None:
        self._table = np.full((0, n_types), np.nan)
        self._fill = fill

    def rows(self, batches: np.ndarray) -> np.ndarray:
        """``[len(batches), types]``: a new array (fancy indexing copies)."""
        table = self._table
        top = int(batches.max())
        if top >= len(table):
            grown = np.full((max(top + 1, 2 * len(table)), table.shape[1]), np.nan)
            grown[: len(table)] = table
            self._table = table = grown
        rows = table[batches]
        missing = np.isnan(rows[:, 0])
        if missing.any():
            todo = np.unique(batches[missing])
            table[todo] = self._fill(todo)
            rows = table[batches]
        return rows


@dataclass(frozen=True, eq=False)
class PolicyContext:
    """What a policy knows besides the live state: the model's profiles, QoS and an RNG.

    ``instance_types`` lists one type per instance (index = instance id), in the same order
    as the driver's ``ClusterState``. It also holds the one cache of mean service times every
    policy and the driver read: a dense ``[batch, type]`` table in ms, filled on first use,
    with per-batch views of it (``est_ms``) and, for scans, the same values in seconds as
    float lists (``est_s_list``).
    """

    model: str
    qos_ms: float
    profiles: ModelProfiles
    instance_types: tuple[str, ...]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    _means_ms: BatchTable = field(init=False, repr=False)
    _rows_ms: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _rows_s: dict[int, list[float]] = field(default_factory=dict, repr=False)

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.instance_types))

    @property
    def qos_s(self) -> float:
        return self.qos_ms / 1000.0

    def __post_init__(self) -> None:
        types = self.type_names
        means = BatchTable(len(types), lambda todo: self.profiles.mean_table_ms(types, todo).T)
        object.__setattr__(self, "_means_ms", means)

    def mean_ms(self, batches: np.ndarray) -> np.ndarray:
        """``[len(batches), types]``: mean service time (ms) of each batch on each type."""
        return self._means_ms.rows(batches)

    def est_ms(self, batch_size: int) -> np.ndarray:
        """Mean service time (ms) of a ``batch_size`` query on each type in ``type_names``
        (a read-only row; a policy asks this on every decision)."""
        row = self._rows_ms.get(batch_size)
        if row is None:
            row = self.mean_ms(np.array([batch_size]))[0]
            row.setflags(write=False)
            self._rows_ms[batch_size] = row
        return row

    def est_s_list(self, batch_size: int) -> list[float]:
        """``est_ms / 1000`` as plain floats (for per-query scans without numpy's call cost)."""
        row = self._rows_s.get(batch_size)
        if row is None:
            row = self._rows_s[batch_size] = (self.est_ms(batch_size) / 1000.0).tolist()
        return row

    def prime(self, batch_sizes: np.ndarray) -> None:
        """Fill the cache for many batch sizes in one vectorised pass."""
        if len(batch_sizes):
            self.mean_ms(np.unique(batch_sizes))

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
    # walk_packages, not iter_modules: a policy may be a package of its own (policies/kairos/),
    # and its registering module sits one level down.
    package = importlib.import_module("kairos.distributor.policies")
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        importlib.import_module(info.name)


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


def option_types(cls: type[Policy]) -> dict[str, tuple[type, ...]]:
    """The policy's options and the value types each accepts, read from its constructor.

    ``float`` accepts whole numbers too; ``X | None`` accepts null. An option without a
    usable annotation accepts anything (the policy checks it).
    """
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, tuple[type, ...]] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        hint = hints.get(p.name, Any)
        args = (
            typing.get_args(hint)
            if typing.get_origin(hint) in (types.UnionType, typing.Union)
            else (hint,)
        )
        kinds = tuple(a if a is not type(None) else type(None) for a in args)
        out[p.name] = kinds if all(isinstance(k, type) for k in kinds) else (object,)
    return out


def check_options(cls: type[Policy], options: Mapping[str, Any]) -> None:
    """Refuse an option the policy does not have, or a value of the wrong type, naming both."""
    accepted = option_types(cls)
    for key, value in options.items():
        kinds = accepted.get(key)
        if kinds is None:
            known = ", ".join(f"{k} ({_type_names(v)})" for k, v in accepted.items()) or "none"
            raise PolicyError(
                f"policy {cls.name!r} has no option {key!r} (its options: {known}).",
                "drop it, or pick a policy that has it.",
            )
        if not _fits(value, kinds):
            raise PolicyError(
                f"policy {cls.name!r} option {key}={value!r} is {_kind_of(value)}; it takes "
                f"{_type_names(kinds)}.",
                f"pass e.g. --policy-option {key}={_example(kinds)}.",
            )


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    if object in kinds:
        return True
    if value is None or isinstance(value, bool):
        return type(value) in kinds
    if isinstance(value, numbers.Integral):
        return int in kinds or float in kinds
    if isinstance(value, numbers.Real):
        return float in kinds and math.isfinite(value)
    return any(k not in (int, float, bool, type(None)) and isinstance(value, k) for k in kinds)


def _kind_of(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "a number" if math.isfinite(value) else "not a finite number"
    names = {type(None): "null", bool: "true/false", str: "text", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {
        float: "a finite number",
        int: "a whole number",
        bool: "true or false",
        str: "text",
        type(None): "null",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _example(kinds: tuple[type, ...]) -> str:
    examples = {float: "0.5", int: "10", bool: "true", str: '"text"', type(None): "null"}
    return examples.get(kinds[0], "null")


def make_policy(name: str, ctx: PolicyContext, **options: Any) -> Policy:
    """The named policy with ``options`` (checked against its constructor first)."""
    cls = policy_class(name)
    check_options(cls, options)
    return cls(ctx, **options)
