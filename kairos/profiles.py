"""Latency profiles: how long a query of batch size ``b`` takes on one instance of a type.

A profile is data. The input format is a CSV with columns ``model,instance_type,batch_size,
latency_ms`` and one row per measured request, so each (model, type, batch) cell is an
empirical distribution of end-to-end service time (loading plus inference). The built-in
table shipped in ``kairos/data`` uses the same format with 21 quantiles per cell as its rows.

Each cell is held as a piecewise-linear inverse CDF: its sorted samples ``q_0 <= ... <= q_{K-1}``
sit at probabilities ``i / (K-1)``. Sampling draws ``u ~ U(0, 1)`` and reads the inverse CDF at
``u``; the mean is that distribution's exact mean. Batch sizes between grid points interpolate
the quantile vectors linearly; above the grid they extrapolate linearly from the top two grid
points (with one warning per profile); below the grid they use the smallest grid point
(a smaller batch is never slower in the data, so this is conservative). See docs/design.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import overload

import numpy as np

from kairos.csvio import Column, read_csv
from kairos.errors import ProfileError, UnknownInstanceTypeError, UnknownModelError
from kairos.limits import BATCH_SIZE, Range

DEFAULT_PROFILES_RESOURCE = "default_profiles.csv.gz"


class ExtrapolationWarning(UserWarning):
    """A batch size above the profiled grid was asked for."""


@dataclass(frozen=True, eq=False)
class LatencyProfile:
    """Service-time distribution of one model on one instance type, for every batch size.

    ``batch_sizes`` is the sorted grid (shape ``[B]``); ``quantiles_ms`` has shape ``[B, K]``,
    row ``b`` holding the inverse CDF of the cell at probabilities ``linspace(0, 1, K)``.
    """

    model: str
    instance_type: str
    batch_sizes: np.ndarray
    quantiles_ms: np.ndarray
    _warned: list[bool] = field(default_factory=lambda: [False], repr=False)

    @property
    def max_batch(self) -> int:
        return int(self.batch_sizes[-1])

    @property
    def min_batch(self) -> int:
        return int(self.batch_sizes[0])

    def _segment(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid neighbours ``lo``, ``hi`` and weight ``w`` so a cell is q[lo] + w (q[hi] - q[lo]).

        ``hi`` is clipped so batches above the grid reuse the top segment (linear
        extrapolation, w > 1) and batches below the grid get w = 0 at the first grid point.
        """
        grid = self.batch_sizes
        b = np.asarray(batch, dtype=float)
        if b.size and float(b.max()) > grid[-1]:
            self._warn_extrapolation(float(b.max()))
        if len(grid) == 1:
            zeros = np.zeros(b.shape, dtype=np.int64)
            return zeros, zeros, np.zeros(b.shape)
        hi = np.clip(np.searchsorted(grid, b, side="left"), 1, len(grid) - 1)
        lo = hi - 1
        w = (np.maximum(b, grid[0]) - grid[lo]) / (grid[hi] - grid[lo])
        return lo, hi, w

    def _rows(self, batch: np.ndarray) -> np.ndarray:
        """Quantile vectors for each batch size in ``batch`` (shape ``[n, K]``)."""
        lo, hi, w = self._segment(batch)
        q = self.quantiles_ms
        return np.maximum(q[lo] + w[:, None] * (q[hi] - q[lo]), 0.0)

    def _warn_extrapolation(self, batch: float) -> None:
        if not self._warned[0]:
            self._warned[0] = True
            warnings.warn(
                f"batch size {batch:g} is above the largest profiled batch {self.max_batch} for "
                f"{self.model} on {self.instance_type}; extrapolating linearly from the top of "
                "the grid",
                ExtrapolationWarning,
                stacklevel=4,
            )

    @overload
    def mean_ms(self, batch: float) -> float: ...
    @overload
    def mean_ms(self, batch: np.ndarray) -> np.ndarray: ...

    def mean_ms(self, batch: float | np.ndarray) -> np.ndarray | float:
        """Exact mean of the interpolated distribution (trapezoid over the inverse CDF)."""
        b = np.atleast_1d(np.asarray(batch, dtype=float))
        rows = self._rows(b)
        means = (rows.sum(axis=1) - 0.5 * (rows[:, 0] + rows[:, -1])) / (rows.shape[1] - 1)
        return float(means[0]) if np.ndim(batch) == 0 else means

    @overload
    def quantile_ms(self, batch: float, q: float) -> float: ...
    @overload
    def quantile_ms(self, batch: np.ndarray, q: float) -> np.ndarray: ...

    def quantile_ms(self, batch: float | np.ndarray, q: float) -> np.ndarray | float:
        """The ``q``-quantile (0 <= q <= 1) of the service time at ``batch``."""
        if not 0.0 <= q <= 1.0:
            raise ProfileError(f"quantile {q!r} is outside [0, 1].", "pass q such as 0.99.")
        b = np.atleast_1d(np.asarray(batch, dtype=float))
        out = self.service_ms(b, np.full(b.shape, q))
        return float(out[0]) if np.ndim(batch) == 0 else out

    def service_ms(self, batch: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Service times for batch sizes ``batch`` at inverse-CDF positions ``u`` in [0, 1].

        Vectorised and O(n): the simulator draws one ``u`` per query and reads every type's
        time from it, touching only the four table entries around each (batch, u) point.
        """
        lo, hi, w = self._segment(np.asarray(batch, dtype=float))
        q = self.quantiles_ms
        k = q.shape[1] - 1
        pos = np.clip(np.asarray(u, dtype=float), 0.0, 1.0) * k
        i = np.minimum(pos.astype(np.int64), k - 1)
        frac = pos - i
        at_lo = q[lo, i] + frac * (q[lo, i + 1] - q[lo, i])
        at_hi = q[hi, i] + frac * (q[hi, i + 1] - q[hi, i])
        return np.maximum(at_lo + w * (at_hi - at_lo), 0.0)

    def sample_ms(self, batch: float, rng: np.random.Generator) -> float:
        """One sampled service time for a query of ``batch`` samples."""
        return float(self.service_ms(np.array([batch]), rng.random(1))[0])


@dataclass(frozen=True, eq=False)
class ModelProfiles:
    """The profiles of one model on every instance type that was measured for it."""

    model: str
    by_type: Mapping[str, LatencyProfile]

    @property
    def instance_types(self) -> tuple[str, ...]:
        return tuple(self.by_type)

    def get(self, instance_type: str) -> LatencyProfile:
        try:
            return self.by_type[instance_type]
        except KeyError:
            known = ", ".join(sorted(self.by_type))
            raise UnknownInstanceTypeError(
                f"instance type {instance_type!r} has no profile for model {self.model!r} "
                f"(known: {known}).",
                "use one of the known types, or pass --profiles with a file that measures it.",
            ) from None

    @property
    def max_batch(self) -> int:
        """Largest batch size profiled on every type (the grid the bounds reason about)."""
        return min(p.max_batch for p in self.by_type.values())

    def base_type(self, types: Iterable[str]) -> str:
        """The type fastest (by mean) on the largest profiled batch: the paper's base type.

        Ties go to the first type given, so the choice is deterministic.
        """
        names = list(dict.fromkeys(types))
        if not names:
            raise ProfileError("no instance types were given.", "give at least one type.")
        top = self.max_batch
        return min(names, key=lambda t: (self.get(t).mean_ms(top), names.index(t)))

    def heterogeneity(self, types: Iterable[str]) -> dict[str, float]:
        """Coefficient c_t = base latency / type-t latency at the largest profiled batch.

        The base type has c = 1; slower types have c < 1.
        """
        names = list(dict.fromkeys(types))
        top = self.max_batch
        base_ms = float(self.get(self.base_type(names)).mean_ms(top))
        return {t: base_ms / float(self.get(t).mean_ms(top)) for t in names}

    def mean_table_ms(self, types: Iterable[str], batches: np.ndarray) -> np.ndarray:
        """Mean service time, shape ``[len(types), len(batches)]``."""
        return np.vstack([np.asarray(self.get(t).mean_ms(batches)) for t in types])


@dataclass(frozen=True, eq=False)
class ProfileSet:
    """Profiles of every (model, instance type) pair loaded from one source."""

    models: Mapping[str, ModelProfiles]
    source: str = "<memory>"

    def model(self, name: str) -> ModelProfiles:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(
                f"model {name!r} is not in the profiles from {self.source} (known: {known}).",
                "pick one of the known models, or pass --profiles with a file that has it.",
            ) from None

    def get(self, model: str, instance_type: str) -> LatencyProfile:
        return self.model(model).get(instance_type)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)


def profiles_from_samples(
    samples: Mapping[tuple[str, str, int], Iterable[float]], source: str = "<memory>"
) -> ProfileSet:
    """Build a ProfileSet from ``{(model, instance_type, batch_size): latencies_ms}``.

    Cells of one (model, type) may have different sample counts; they are resampled to the
    largest count among them so a profile is one rectangular table.
    """
    grouped: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for (model, itype, batch), values in samples.items():
        arr = np.sort(np.asarray(list(values), dtype=float))
        if arr.size == 0:
            raise ProfileError(
                f"cell ({model}, {itype}, batch {batch}) has no samples in {source}.",
                "give every (model, instance_type, batch_size) at least one latency_ms row.",
            )
        grouped.setdefault(model, {}).setdefault(itype, {})[int(batch)] = arr
    models: dict[str, ModelProfiles] = {}
    for model, types in grouped.items():
        by_type: dict[str, LatencyProfile] = {}
        for itype, cells in types.items():
            grid = np.array(sorted(cells), dtype=float)
            k = max(2, max(len(c) for c in cells.values()))
            probs = np.linspace(0.0, 1.0, k)
            table = np.vstack([_resample(cells[int(b)], probs) for b in grid])
            by_type[itype] = LatencyProfile(model, itype, grid, table)
        models[model] = ModelProfiles(model, by_type)
    return ProfileSet(models, source)


def _resample(sorted_values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Inverse CDF of ``sorted_values`` (linear between order statistics) at ``probs``."""
    if sorted_values.size == len(probs):
        return sorted_values
    if sorted_values.size == 1:
        return np.full(len(probs), sorted_values[0])
    return np.quantile(sorted_values, probs)


PROFILE_COLUMNS = (
    Column("model"),
    Column("instance_type"),
    Column("batch_size", BATCH_SIZE),
    Column("latency_ms", Range("latency_ms", 0, 1e9, "ms")),
)


def load_profiles(path: str | Path) -> ProfileSet:
    """Load a profile CSV (optionally gzip-compressed); raise ProfileError on any defect."""
    return profiles_from_samples(_read_samples(path), str(path))


def _read_samples(path: str | Path) -> dict[tuple[str, str, int], list[float]]:
    cells: dict[tuple[str, str, int], list[float]] = {}
    rows = read_csv(path, "profile file", PROFILE_COLUMNS, ProfileError)
    for _, (model, itype, batch, latency) in rows:
        cells.setdefault((model, itype, batch), []).append(latency)
    return cells


# The built-in profiles, built once per process: parsing the table's 42,000 rows takes about
# 0.3 s of CPU and building the profiles from them 20 ms more, and a Scenario without profiles
# asks for them each time (the test suite builds hundreds). Every call gets a ProfileSet of its
# own, with copies of the arrays and its own once-per-profile warning flags, so no caller can
# change what another sees.
@cache
def _built_in_profiles() -> ProfileSet:
    ref = resources.files("kairos.data").joinpath(DEFAULT_PROFILES_RESOURCE)
    with resources.as_file(ref) as p:
        cells = _read_samples(p)
    return profiles_from_samples(cells, "built-in profiles")


def default_profiles() -> ProfileSet:
    """The built-in profiles (5 recommendation models on 4 AWS types; see kairos/data)."""
    models = {
        name: ModelProfiles(
            name,
            {
                t: LatencyProfile(name, t, p.batch_sizes.copy(), p.quantiles_ms.copy())
                for t, p in mp.by_type.items()
            },
        )
        for name, mp in _built_in_profiles().models.items()
    }
    return ProfileSet(models, "built-in profiles")
