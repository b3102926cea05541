"""Run many independent simulations at once: the capacity searches of compare, plan and oracle.

An ``Executor`` maps a picklable function over items and returns the results in item order,
whatever order they finish in, so a parallel run returns exactly what a serial one does (each
search is a pure function of its seed). Backends are a registry: ``"local"`` runs a pool of
local processes (one process means in-process, no pool); a new backend is one class
registered under its name here, and every caller picks it up through ``Parallelism``.
``"ray"`` (one Ray task per job, kairos/serving/ray/jobs.py) is registered by its dotted path:
it is imported only when picked, and this layer imports nothing above it.
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from kairos.errors import ConfigError
from kairos.registry import Registry

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Parallelism:
    """Where simulations run: ``backend`` (a name in ``BACKENDS``) and ``jobs`` (workers at
    once; ``None`` = one per CPU core). The CLI's ``--jobs`` and ``--backend`` read these."""

    backend: str = "local"
    jobs: int | None = None

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        if self.jobs is not None and (
            isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1
        ):
            raise ConfigError(
                f"jobs {self.jobs!r} is not a whole number >= 1.",
                "pass --jobs N with N >= 1 (default: one per CPU core).",
            )

    @property
    def workers(self) -> int:
        return self.jobs if self.jobs is not None else (os.cpu_count() or 1)


class Executor(ABC):
    """Maps a function over items; results in item order. Use as a context manager."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @abstractmethod
    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``[fn(x) for x in items]``; ``progress(index, result)`` as each one finishes."""

    def close(self) -> None:  # noqa: B027 - a serial executor holds nothing
        """Release workers (a no-op for executors that hold none)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SerialExecutor(Executor):
    """In this process, one item after the other."""

    def __init__(self, workers: int = 1) -> None:
        super().__init__(1)

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if progress is not None:
                progress(i, out[-1])
        return out


class LocalProcessExecutor(Executor):
    """A pool of local worker processes, started on first use and kept for later maps.

    One worker means no pool at all (the serial path), so ``--jobs 1`` costs nothing extra.
    Workers are forked where the platform allows it (they inherit loaded profiles and caches,
    and start in milliseconds), spawned elsewhere.
    """

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context(method)
            )
        return self._pool

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        if self.workers <= 1 or len(items) <= 1:
            return SerialExecutor().map(fn, items, progress)
        pool = self._ensure_pool()
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        index = {id(f): i for i, f in enumerate(futures)}
        if progress is not None:
            for f in as_completed(futures):
                progress(index[id(f)], f.result())
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


BACKENDS: Registry[Callable[[int], Executor]] = Registry(
    "parallel backend", "pass --backend with one of the known names."
)
BACKENDS.add("local", LocalProcessExecutor)
BACKENDS.add_path("ray", "kairos.serving.ray.jobs:RayExecutor")


def make_executor(parallelism: Parallelism | None = None) -> Executor:
    """The executor ``parallelism`` asks for (serial when ``None``)."""
    if parallelism is None:
        return SerialExecutor()
    return BACKENDS.get(parallelism.backend)(parallelism.workers)


def run_all(
    fn: Callable[[T], R],
    items: Sequence[T],
    executor: Executor | None = None,
    progress: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``executor.map`` when one is given, else serially in this process."""
    return (executor or SerialExecutor()).map(fn, items, progress)
