"""What travels between client, router and worker: KServe v2 tensors and the worker RPC frames.

Client to router is the Open Inference Protocol (KServe v2) over HTTP/1.1 with JSON bodies.
Router to worker (framed TCP or gRPC with generic byte handlers, see ``transport``; no
``protoc`` step either way) carries *frames*: a 4-byte big-endian header length, a
small JSON header, then an opaque payload. The router forwards the client's request body as
the payload untouched (one parse in the router for validation, none re-encoded), and the
worker answers with the KServe ``outputs`` array as its payload, which the router splices
into the HTTP response without decoding it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kairos.errors import KairosError

SERVICE = "kairos.v1.Worker"
DESCRIBE = f"/{SERVICE}/Describe"
SERVE = f"/{SERVICE}/Serve"  # bidirectional stream: one query in flight per worker
INFER = f"/{SERVICE}/Infer"  # the same as one Serve message, for ad-hoc clients

GRPC_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_OPTIONS = (
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)

_HEADER_LEN = struct.Struct("!I")

# KServe v2 datatype -> numpy dtype (BYTES is not supported: recommendation models take numbers).
DATATYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in DATATYPES.items()}


class BadRequest(KairosError):
    """A request that fails validation; the router answers HTTP 400 with its message."""

    def __init__(self, message: str, fix: str = "send a KServe v2 inference request.") -> None:
        super().__init__(message, fix)


def frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return _HEADER_LEN.pack(len(head)) + head + payload


def unframe(message: bytes) -> tuple[dict[str, Any], bytes]:
    if len(message) < _HEADER_LEN.size:
        raise ValueError(f"frame of {len(message)} bytes is shorter than its length prefix")
    (n,) = _HEADER_LEN.unpack_from(message)
    end = _HEADER_LEN.size + n
    return orjson.loads(message[_HEADER_LEN.size : end]), message[end:]


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output; ``-1`` in ``shape`` is a free dimension (dim 0 = batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def parse(cls, spec: TensorSpec | Mapping[str, Any]) -> TensorSpec:
        if isinstance(spec, TensorSpec):
            return spec
        return cls(str(spec["name"]), str(spec["datatype"]), tuple(int(d) for d in spec["shape"]))


def specs_as_dicts(specs: Sequence[TensorSpec] | None) -> list[dict[str, Any]] | None:
    return None if specs is None else [s.as_dict() for s in specs]


def parse_specs(raw: Iterable[Any] | None) -> tuple[TensorSpec, ...] | None:
    return None if raw is None else tuple(TensorSpec.parse(s) for s in raw)


@dataclass(frozen=True)
class ParsedRequest:
    batch_size: int
    request_id: str | None


def validate_request(
    body: bytes, signature: Sequence[TensorSpec] | None, max_batch: int
) -> ParsedRequest:
    """Check a KServe v2 infer body (flat ``data`` only) and return its batch size.

    Element types are not inspected here (that would cost a pass over every number); the
    worker converts the data with numpy and answers 400 itself if a value does not fit.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"request body is a JSON {type(doc).__name__}, not an object.")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("request has no 'inputs' list.", "send {'inputs': [{...}, ...]}.")
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest(f"request 'id' {rid!r} is not a string.", "send 'id' as a string.")
    checked = [_check_tensor(t, k) for k, t in enumerate(inputs)]
    names = [name for name, _, _ in checked]
    if len(set(names)) != len(names):
        raise BadRequest(f"input names {names} repeat a name.", "give each input once.")
    shapes = set(checked)
    batches = {shape[0] for _, _, shape in shapes if shape}
    if len(batches) != 1:
        raise BadRequest(
            f"inputs disagree on the batch size (first dimensions {sorted(batches)}).",
            "give every input the same first dimension: the number of samples in the query.",
        )
    batch = batches.pop()
    if signature is not None:
        _check_signature(shapes, signature)
    if not 1 <= batch <= max_batch:
        raise BadRequest(
            f"batch size {batch} is outside the profiled range 1..{max_batch}.",
            f"split the query into batches of at most {max_batch} samples.",
        )
    return ParsedRequest(batch, rid)


def _check_tensor(t: Any, k: int) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(t, dict):
        raise BadRequest(f"inputs[{k}] is not an object.")
    name, datatype, shape, data = t.get("name"), t.get("datatype"), t.get("shape"), t.get("data")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{k}] has no 'name'.")
    if datatype not in DATATYPES:
        raise BadRequest(
            f"input {name!r} has datatype {datatype!r}, which is not supported.",
            f"use one of {', '.join(DATATYPES)}.",
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise BadRequest(
            f"input {name!r} has shape {shape!r}; it must be a non-empty list of whole numbers.",
            "give 'shape' as [batch, ...], for example [100, 13].",
        )
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r} has no 'data' list.", "send the values in 'data'.")
    if data and isinstance(data[0], list):
        raise BadRequest(f"input {name!r} has nested 'data'.", "flatten 'data' in row-major order.")
    if len(data) != math.prod(shape):
        raise BadRequest(
            f"input {name!r} has {len(data)} values but shape {shape} needs {math.prod(shape)}.",
            "send exactly prod(shape) values, flattened in row-major order.",
        )
    return name, str(datatype), tuple(shape)


def _check_signature(
    got: set[tuple[str, str, tuple[int, ...]]], signature: Sequence[TensorSpec]
) -> None:
    by_name = {name: (dt, shape) for name, dt, shape in got}
    want = {s.name for s in signature}
    if set(by_name) != want:
        raise BadRequest(
            f"inputs are named {sorted(by_name)} but the model takes {sorted(want)}.",
            "send exactly the inputs listed by GET /v2/models/{model}.",
        )
    for spec in signature:
        dt, shape = by_name[spec.name]
        if dt != spec.datatype:
            raise BadRequest(
                f"input {spec.name!r} has datatype {dt}, the model takes {spec.datatype}.",
                f"send {spec.name!r} as {spec.datatype}.",
            )
        ok = len(shape) == len(spec.shape) and all(
            w < 0 or w == d for w, d in zip(spec.shape, shape, strict=True)
        )
        if not ok:
            raise BadRequest(
                f"input {spec.name!r} has shape {list(shape)}, the model takes "
                f"{list(spec.shape)} (-1 = any).",
                f"reshape {spec.name!r} to {list(spec.shape)}.",
            )


def decode_inputs(body: bytes) -> dict[str, np.ndarray]:
    """The request's inputs as numpy arrays (worker side); raises BadRequest on bad data."""
    doc = orjson.loads(body)
    out: dict[str, np.ndarray] = {}
    for t in doc["inputs"]:
        try:
            arr = np.asarray(t["data"], dtype=DATATYPES[t["datatype"]])
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadRequest(
                f"input {t['name']!r} holds values that are not {t['datatype']} ({exc}).",
                f"send numbers that fit {t['datatype']}.",
            ) from None
        out[t["name"]] = arr.reshape(t["shape"])
    return out


def encode_outputs(outputs: Mapping[str, np.ndarray]) -> bytes:
    """KServe v2 ``outputs`` array (JSON bytes) from named numpy arrays."""
    items = []
    for name, value in outputs.items():
        arr = np.asarray(value)
        datatype = _NUMPY_TO_V2.get(arr.dtype.str)
        if datatype is None:
            arr = arr.astype(np.float32)
            datatype = "FP32"
        items.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(arr.shape),
                "data": arr.ravel().tolist(),
            }
        )
    return orjson.dumps(items)
