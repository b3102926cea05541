"""Named choices: one registry class for every string a user picks from a list.

Policies, bounds, comparison schemes, transports, worker hostings, worker modes and pool
backends are each a ``Registry``. A name is checked where it enters the library (not only in
the CLI), so a wrong name fails the same way wherever it comes from: one line naming it, the
known names, and how to fix it. The CLI builds its ``click.Choice`` lists from ``names()``,
so adding an entry is one ``register`` call and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from kairos.errors import ConfigError, KairosError

T = TypeVar("T")


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
        self._entries: dict[str, T] = {}
        self._discover = discover

    def add(self, name: str, value: T) -> T:
        if not name:
            raise self._error(f"a {self.kind} needs a non-empty name.", "give it a name.")
        if self._entries.get(name, value) is not value:
            raise self._error(f"{self.kind} {name!r} is registered twice.", "pick another name.")
        self._entries[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""

        def deco(value: T) -> T:
            return self.add(name, value)

        return deco

    def _ready(self) -> dict[str, T]:
        if self._discover is not None:
            discover, self._discover = self._discover, None
            discover()
        return self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._ready())

    def get(self, name: object) -> T:
        entries = self._ready()
        try:
            return entries[name]  # type: ignore[index]
        except (KeyError, TypeError):
            raise self._error(
                f"{self.kind} {name!r} is not known (known: {', '.join(entries)}).", self._hint
            ) from None

    def check(self, name: object) -> str:
        """``name`` if it is registered; the unknown-name error otherwise."""
        self.get(name)
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
