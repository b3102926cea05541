"""Running a model on request bodies: decode, check against the model's declared inputs, run,
encode. The worker's ``model`` mode and ``kairos profile`` both go through ``ModelHandler``,
so a profile measures exactly the work a worker does per query.

The model is any callable ``{name: ndarray} -> {name: ndarray}`` (a single array is named
``output0``), optionally declaring ``inputs`` and ``outputs`` as KServe v2 tensor specs
(``{"name", "datatype", "shape"}``, ``-1`` = any size, dimension 0 = batch): the handler
contract of docs/models.md. A built-in model (``kairos.models``) is such a callable that
also splits its work into ``prepare`` (arrays to tensors) and ``infer`` (the forward pass),
which a profile reports apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kairos.protocol.tensors import (
    DATATYPES,
    BadRequest,
    TensorSpec,
    decode_inputs,
    encode_outputs,
    parse_specs,
)


def check_inputs(
    arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec] | None, *, values: bool = True
) -> int:
    """Check decoded inputs against the declared ones; return the batch size.

    Names, datatypes and shapes must match the declaration (``-1`` matches any size) and
    every input must have the same first dimension; floating-point values must be finite
    (JSON ``null`` decodes to NaN and ``1e300`` to infinity in FP32: neither may reach a
    model). ``values=False`` skips that pass over every number, for arrays ``decode_inputs``
    has already checked. Raises BadRequest, which the worker answers with HTTP 400.
    """
    if specs is not None:
        _check_declared(arrays, specs)
    batches = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batches) != 1:
        raise BadRequest(
            f"inputs disagree on the batch size (first dimensions {sorted(batches)}).",
            "give every input the same first dimension: the number of samples.",
        )
    for name, arr in arrays.items() if values else ():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = arr[~np.isfinite(arr)].ravel()[0]
            raise BadRequest(
                f"input {name!r} holds a non-finite value ({bad}); null, NaN, infinity and "
                "numbers too large for the datatype are refused.",
                "send finite numbers that fit the input's datatype.",
            )
    return batches.pop()


def _check_declared(arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> None:
    want = [s.name for s in specs]
    if sorted(arrays) != sorted(want):
        raise BadRequest(
            f"inputs are named {sorted(arrays)} but the model takes {sorted(want)}.",
            "send exactly the inputs listed by GET /v2/models/{model}.",
        )
    for spec in specs:
        arr = arrays[spec.name]
        if arr.dtype != np.dtype(DATATYPES.get(spec.datatype, "V")):
            raise BadRequest(
                f"input {spec.name!r} is {arr.dtype}, the model takes {spec.datatype}.",
                f"send {spec.name!r} as {spec.datatype}.",
            )
        ok = arr.ndim == len(spec.shape) and all(
            w < 0 or w == d for w, d in zip(spec.shape, arr.shape, strict=True)
        )
        if not ok:
            raise BadRequest(
                f"input {spec.name!r} has shape {list(arr.shape)}, the model takes "
                f"{list(spec.shape)} (-1 = any).",
                f"reshape {spec.name!r} to {list(spec.shape)}.",
            )


@dataclass(frozen=True)
class QueryTimes:
    """One query through a handler, in milliseconds: decoding and checking the body plus
    turning arrays into the model's tensors; the model itself; everything (with encoding)."""

    prepare_ms: float
    infer_ms: float
    total_ms: float


class ModelHandler:
    """Serves a model callable on request bodies (the worker's ``model`` mode)."""

    def __init__(
        self,
        fn: Callable[[dict[str, np.ndarray]], Any],
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
    ) -> None:
        self._fn = fn
        self.inputs = parse_specs(inputs if inputs is not None else getattr(fn, "inputs", None))
        self.outputs = parse_specs(outputs if outputs is not None else getattr(fn, "outputs", None))
        prepare, infer = getattr(fn, "prepare", None), getattr(fn, "infer", None)
        self._split = (prepare, infer) if callable(prepare) and callable(infer) else None
        self.last_times: QueryTimes | None = None  # of the query ``run`` answered last

    def decode(
        self, payload: bytes | memoryview, json_length: int | None = None
    ) -> dict[str, np.ndarray]:
        """The request's arrays, checked against the declared inputs (BadRequest if not).

        Binary tensors in a writable buffer come back as views of it (``decode_inputs``):
        the caller keeps the buffer unchanged until the query is answered.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf: refused below
            arrays = decode_inputs(payload, json_length)
        check_inputs(arrays, self.inputs, values=False)  # decode_inputs refused non-finite
        return arrays

    def serve(self, payload: bytes | memoryview, json_length: int | None = None) -> bytes:
        return encode_outputs(_as_outputs(self._fn(self.decode(payload, json_length))))

    def timed(
        self, payload: bytes | memoryview, json_length: int | None = None
    ) -> tuple[bytes, QueryTimes]:
        """``serve`` with the preparation and the model's own time measured apart."""
        t0 = time.perf_counter()
        arrays = self.decode(payload, json_length)
        return self.compute(arrays, (time.perf_counter() - t0) * 1000.0)

    def compute(
        self, arrays: dict[str, np.ndarray], decode_ms: float = 0.0
    ) -> tuple[bytes, QueryTimes]:
        """The model on decoded arrays, and its encoded outputs; ``decode_ms`` (spent before,
        perhaps on another thread) counts as preparation, so the times are the query's."""
        t0 = time.perf_counter()
        if self._split is not None:
            prepare, infer = self._split
            tensors = prepare(arrays)
            t1 = time.perf_counter()
            result = infer(tensors)
            del tensors  # views of the request's buffer: released before the buffer is reused
        else:
            t1 = time.perf_counter()
            result = self._fn(arrays)
        t2 = time.perf_counter()
        body = encode_outputs(_as_outputs(result))
        t3 = time.perf_counter()
        ms = 1000.0
        return body, QueryTimes(
            decode_ms + (t1 - t0) * ms, (t2 - t1) * ms, decode_ms + (t3 - t0) * ms
        )

    async def run(
        self, batch_size: int, payload: bytes | memoryview, json_length: int | None = None
    ) -> bytes:
        # In a thread, so the worker's RPC loop stays responsive during a long forward pass.
        self.last_times = None
        body, self.last_times = await asyncio.to_thread(self.timed, payload, json_length)
        return body


def _as_outputs(result: Any) -> Mapping[str, np.ndarray]:
    return result if isinstance(result, Mapping) else {"output0": result}
