"""A checked table of named choices (bounds, comparison schemes, executor backends, ...).

A name that is not registered fails where it enters the library, with a ``ConfigError`` that
lists the known names and says how to pass one, so a wrong name cannot be skipped silently
whether it came from the CLI, a config object or a direct call. The CLI reads its choice lists
from the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from kairos.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to values, in registration order.

    ``what`` names the kind of choice in error messages ("bound", "scheme"); ``option`` is
    how a user passes one ("--bound"), used in the fix hint.
    """

    def __init__(self, what: str, option: str) -> None:
        self.what = what
        self.option = option
        self._items: dict[str, T] = {}

    def add(self, name: str, value: T) -> T:
        if name in self._items:
            raise ConfigError(f"{self.what} {name!r} is registered twice.", "pick another name.")
        self._items[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""

        def deco(value: T) -> T:
            return self.add(name, value)

        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def check(self, name: object) -> str:
        """``name`` if it is registered; otherwise a ConfigError naming the known ones."""
        if not isinstance(name, str) or name not in self._items:
            raise ConfigError(
                f"{self.what} {name!r} is not known (known: {', '.join(self._items)}).",
                f"pass {self.option} with one of: {', '.join(self._items)}.",
            )
        return name

    def check_all(self, names: Iterable[object]) -> tuple[str, ...]:
        """Every name checked; an empty selection is an error too."""
        out = tuple(self.check(n) for n in names)
        if not out:
            raise ConfigError(
                f"no {self.what} was given.",
                f"pass {self.option} with one or more of: {', '.join(self._items)}.",
            )
        return out

    def get(self, name: object) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
