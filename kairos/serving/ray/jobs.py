"""Independent jobs (the simulations of a capacity search) as Ray tasks.

``ray_map(fn, items)`` is ``[fn(x) for x in items]`` run as one Ray task per item, results in
the order of ``items``. The jobs are the same calls as in a serial run, each with its own
seed, so the numbers are the same too (a test checks it). ``fn`` is shipped once through the
object store; it and the items must pickle, and ``fn`` must be importable on every node
(a module-level function, or a ``functools.partial`` of one). An exception in a job is
raised here as itself (a ``KairosError`` stays one), not wrapped in Ray's error.

Without ``address`` (and not connected yet) it starts a local Ray instance for the call and
stops it afterwards; inside a connected process it uses that connection. ``RayExecutor`` is
the ``ray`` backend of the parallel capacity searches (``--backend ray``): ``sim.parallel``
names it by its dotted path and imports it when it is picked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from kairos.serving.ray.session import connect, import_ray, normal_priority
from kairos.sim.parallel import Executor

T = TypeVar("T")
R = TypeVar("R")
NAMESPACE = "kairos"


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    normal_priority()
    return fn(item)


def ray_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    address: str | None = None,
    progress: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]``, each call a Ray task (see the module docstring);
    ``progress(index, result)`` as each one finishes (the shape of ``sim.parallel.Executor``).
    How many run at once is Ray's to decide from the cluster's CPUs (one per task)."""
    jobs = list(items)
    if not jobs:
        return []
    ray = import_ray()
    owned = connect(address, NAMESPACE)
    try:
        task = ray.remote(_apply)
        shared_fn = ray.put(fn)
        refs = [task.remote(shared_fn, job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = refs
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = _result(ray, done[0])
            if progress is not None:
                progress(i, results[i])
        return results
    finally:
        if owned:
            ray.shutdown()


def _result(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


class RayExecutor(Executor):
    """``--backend ray`` for the capacity searches of ``compare``, ``plan`` and the oracle:
    each job a Ray task. It joins the cluster named by ``RAY_ADDRESS`` (or starts a local
    instance) on first use and leaves it on ``close``; how many tasks run at once is Ray's to
    decide from the cluster's CPUs, so ``workers`` is not used."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._owned = False
        self._connected = False

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        if not self._connected:
            self._owned = connect(os.environ.get("RAY_ADDRESS"), NAMESPACE)
            self._connected = True
        return ray_map(fn, items, progress=progress)

    def close(self) -> None:
        if self._owned:
            import_ray().shutdown()
        self._owned = self._connected = False
