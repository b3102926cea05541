"""Each built-in model is built once per test session (they take 90-170 MB each)."""

from __future__ import annotations

import functools

import numpy as np

from kairos.models import load_model
from kairos.models.base import ModelRunner
from kairos.protocol.tensors import DATATYPES, parse_specs


@functools.cache
def runner(name: str) -> ModelRunner:
    return load_model(name, threads=1)


def example_inputs(r: ModelRunner, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the declared shapes: ids over a wide range, dense values in [0, 1)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in parse_specs(r.inputs) or ():
        shape = (batch, *spec.shape[1:])
        dtype = np.dtype(DATATYPES[spec.datatype])
        if dtype.kind == "f":
            out[spec.name] = rng.random(shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, 2**31 - 1, shape).astype(dtype)
    return out
