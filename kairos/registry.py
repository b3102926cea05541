"""Named choices: one registry class for every string a user picks from a list.

Policies, bounds, comparison schemes, transports, worker hostings, worker modes and pool
backends are each a ``Registry``. A name is checked where it enters the library (not only in
the CLI), so a wrong name fails the same way wherever it comes from: one line naming it, the
known names, and how to fix it. The CLI builds its ``click.Choice`` lists from ``names()``,
so adding an entry is one ``register`` call and nothing else.

An entry may also be a dotted path (``add_path("ray", "kairos.serving.ray.pool:RayPool")``),
imported on its first ``get``: a backend that lives above the registry's own layer, or that
costs an import most runs never need, is known by name at once and loaded only when picked,
and nothing has to import a module just so that it registers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from kairos.errors import ConfigError, KairosError

T = TypeVar("T")


@dataclass(frozen=True)
class _Path:
    """An entry not imported yet: ``module:attribute``."""

    module: str
    attribute: str

    def load(self) -> object:
        return getattr(importlib.import_module(self.module), self.attribute)


class Registry(Generic[T]):
    """A name -> value table with a uniform unknown-name error.

    ``discover`` (optional) is called once before the first lookup, for registries whose
    entries register themselves on import (the policies: one module each).
    """

    def __init__(
        self,
        kind: str,
        hint: str,
        error: type[KairosError] = ConfigError,
        discover: Callable[[], None] | None = None,
    ) -> None:
        self.kind = kind
        self._hint = hint
        self._error = error
        self._entries: dict[str, T | _Path] = {}
        self._discover = discover

    def add(self, name: str, value: T) -> T:
        self._put(name, value)
        return value

    def add_path(self, name: str, path: str) -> None:
        """Register ``name`` as ``"package.module:attribute"``, imported on its first ``get``
        (``names``, ``check`` and ``in`` do not import it)."""
        module, _, attribute = path.partition(":")
        if not (module and attribute):
            raise self._error(
                f"{self.kind} {name!r}: {path!r} is not a dotted path 'package.module:attribute'.",
                "write the module, a colon, and the name in it.",
            )
        self._put(name, _Path(module, attribute))

    def _put(self, name: str, value: T | _Path) -> None:
        if not name:
            raise self._error(f"a {self.kind} needs a non-empty name.", "give it a name.")
        known = self._entries.get(name, value)
        # The same dotted path twice is one entry (a path is a value, not an object).
        if known is not value and not (isinstance(known, _Path) and known == value):
            raise self._error(f"{self.kind} {name!r} is registered twice.", "pick another name.")
        self._entries[name] = value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""

        def deco(value: T) -> T:
            return self.add(name, value)

        return deco

    def _ready(self) -> dict[str, T | _Path]:
        if self._discover is not None:
            discover, self._discover = self._discover, None
            discover()
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._ready())

    def _entry(self, name: object) -> T | _Path:
        entries = self._ready()
        try:
            return entries[name]  # type: ignore[index]
        except (KeyError, TypeError):
            raise self._error(
                f"{self.kind} {name!r} is not known (known: {', '.join(entries)}).", self._hint
            ) from None

    def get(self, name: object) -> T:
        value = self._entry(name)
        if isinstance(value, _Path):
            # Loaded once; an import error propagates as itself (it names what is missing).
            value = self._entries[str(name)] = cast(T, value.load())
        return value

    def check(self, name: object) -> str:
        """``name`` if it is registered (without importing a dotted-path entry); the
        unknown-name error otherwise."""
        self._entry(name)
        return str(name)

    def check_all(self, names: Iterable[object]) -> tuple[str, ...]:
        """Every name checked; an empty selection is an error too."""
        out = tuple(self.check(n) for n in names)
        if not out:
            raise self._error(
                f"no {self.kind} was given (known: {', '.join(self._ready())}).", self._hint
            )
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._ready()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
