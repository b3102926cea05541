"""KServe v2 tensors: what a client sends the router and what a worker decodes and answers.

Client to router is the Open Inference Protocol (KServe v2) over HTTP/1.1: JSON bodies, or
the binary tensor data extension (a JSON part, then raw tensor bytes). The router validates a
request here once and forwards its body to the worker untouched inside a frame
(``kairos.protocol.frames``); the worker decodes it here and encodes its outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kairos.errors import KairosError

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


# The binary tensor data extension (as Triton and its clients implement it): the HTTP header
# names the JSON part's length; each binary input says its byte count in
# ``parameters.binary_data_size``, and the raw little-endian row-major bytes follow the JSON
# in input order.
BINARY_HEADER = "inference-header-content-length"


@dataclass(frozen=True)
class ParsedRequest:
    batch_size: int
    request_id: str | None
    json_length: int | None = None  # the JSON part's length in a binary-extension body


def parse_json_length(value: str | None, body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` header as a number of bytes (None if absent)."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 < n <= body_size:
        raise BadRequest(
            f"Inference-Header-Content-Length {value!r} is not a byte count within the "
            f"{body_size}-byte body.",
            "send the length of the JSON part that starts the body, or drop the header and "
            "send every tensor's values in 'data'.",
        )
    return n


def validate_request(
    body: bytes,
    signature: Sequence[TensorSpec] | None,
    max_batch: int,
    json_length: int | None = None,
) -> ParsedRequest:
    """Check a KServe v2 infer body and return its batch size.

    Tensors come as flat JSON ``data`` or, with ``json_length`` (the binary extension), as
    raw bytes after the JSON part. Element values are not inspected here (that would cost
    a pass over every number); the worker converts them with numpy and answers 400 itself
    if a value does not fit. The binary form costs the router almost nothing to check: only
    the small JSON part is parsed.
    """
    text = body if json_length is None else body[:json_length]
    try:
        doc = orjson.loads(text)
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
    sized = [_check_tensor(t, k, json_length is not None) for k, t in enumerate(inputs)]
    if json_length is not None:
        _check_binary_total(sum(size for *_, size in sized), len(body) - json_length)
    checked = [(name, dt, shape) for name, dt, shape, _ in sized]
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
    return ParsedRequest(batch, rid, json_length)


def _check_binary_total(declared: int, present: int) -> None:
    if declared != present:
        raise BadRequest(
            f"the inputs declare {declared} bytes of binary data but {present} bytes follow "
            "the JSON part.",
            "set Inference-Header-Content-Length to the JSON part's length and append each "
            "binary input's bytes, in input order.",
        )


def _binary_size(t: dict[str, Any], name: str) -> int | None:
    params = t.get("parameters")
    if params is None:
        return None
    if not isinstance(params, dict):
        raise BadRequest(f"input {name!r} has 'parameters' that are not an object.")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(
            f"input {name!r} has binary_data_size {size!r}; it must be a byte count.",
            "give the number of bytes of the tensor's raw data.",
        )
    return size


def _check_tensor(t: Any, k: int, binary: bool = False) -> tuple[str, str, tuple[int, ...], int]:
    if not isinstance(t, dict):
        raise BadRequest(f"inputs[{k}] is not an object.")
    name, datatype, shape, data = t.get("name"), t.get("datatype"), t.get("shape"), t.get("data")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{k}] has no 'name'.")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
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
    size = _binary_size(t, name)
    if size is not None:
        if not binary:
            raise BadRequest(
                f"input {name!r} has binary_data_size but the request has no "
                "Inference-Header-Content-Length header.",
                "send that header with the JSON part's length, or send the values in 'data'.",
            )
        if data is not None:
            raise BadRequest(
                f"input {name!r} has both 'data' and binary_data_size.",
                "send the values one way only.",
            )
        need = math.prod(shape) * np.dtype(DATATYPES[str(datatype)]).itemsize
        if size != need:
            raise BadRequest(
                f"input {name!r} has {size} bytes of binary data but shape {shape} of "
                f"{datatype} needs {need}.",
                "send exactly prod(shape) x element size bytes, row-major, little-endian.",
            )
        return name, str(datatype), tuple(shape), size
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r} has no 'data' list.", "send the values in 'data'.")
    if data and isinstance(data[0], list):
        raise BadRequest(f"input {name!r} has nested 'data'.", "flatten 'data' in row-major order.")
    if len(data) != math.prod(shape):
        raise BadRequest(
            f"input {name!r} has {len(data)} values but shape {shape} needs {math.prod(shape)}.",
            "send exactly prod(shape) values, flattened in row-major order.",
        )
    return name, str(datatype), tuple(shape), 0


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


def decode_inputs(
    body: bytes | memoryview, json_length: int | None = None
) -> dict[str, np.ndarray]:
    """The request's inputs as numpy arrays (worker side); raises BadRequest on bad values.

    The body was validated by the router (structure, shapes, sizes); this reads the values,
    so it refuses what the router does not look at: null, text or nested values, NaN,
    infinity and floats that overflow their datatype (1e300 in FP32), fractional or
    out-of-range values for integer types. Nothing questionable reaches the model.
    ``json_length`` marks a binary-extension body. Binary tensors in a writable buffer
    (a ``bytearray`` or a view of one) are decoded without a copy: see below.
    """
    doc = orjson.loads(body if json_length is None else body[:json_length])
    out: dict[str, np.ndarray] = {}
    offset = json_length or 0
    for t in doc["inputs"]:
        name, datatype = t["name"], t["datatype"]
        target = np.dtype(DATATYPES[datatype])
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            dtype = target.newbyteorder("<")
            try:
                raw = np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=offset)
            except ValueError as exc:
                raise BadRequest(
                    f"input {name!r} has binary data that does not fit ({exc})."
                ) from None
            # A writable, aligned buffer in this machine's byte order (the worker's reused
            # receive buffer) is used in place: the array is a view, so the caller keeps the
            # buffer unchanged while the array lives. Read-only bytes are copied, as a model
            # (torch.from_numpy) refuses to share memory it may not write.
            native = raw.dtype == target and raw.flags.writeable and raw.flags.aligned
            arr = raw if native else raw.astype(target.newbyteorder("="))
            offset += size
        else:
            arr = _cast(_numbers(t["data"], name, datatype), target, name, datatype)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BadRequest(
                f"input {name!r} holds a value that is not finite in {datatype} (null, NaN, "
                f"infinity, or beyond the datatype's range of +-{np.finfo(arr.dtype).max:.4g}).",
                f"send finite {datatype} numbers.",
            )
        out[name] = arr.reshape(t["shape"])
    return out


def _numbers(data: Any, name: str, datatype: str) -> np.ndarray:
    """``data`` as a numeric array, or BadRequest (null, text, objects, ragged lists)."""
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raw = None
    if raw is None or raw.dtype.kind not in "biuf":
        raise BadRequest(
            f"input {name!r} holds values that are not all numbers (null, text, nested lists "
            "and integers beyond 64 bits are refused).",
            f"send {datatype} numbers in a flat 'data' list.",
        )
    return raw


def _cast(raw: np.ndarray, target: np.dtype, name: str, datatype: str) -> np.ndarray:
    """``raw`` converted to ``target`` only where no value changes (beyond float rounding)."""
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            return raw.astype(target)  # overflow becomes inf, which the caller refuses
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise BadRequest(
            f"input {name!r} holds values that are not whole numbers, as {datatype} needs.",
            "send whole numbers.",
        )
    if target.kind == "b":
        if raw.dtype.kind != "b" and not np.isin(raw, (0, 1)).all():
            raise BadRequest(
                f"input {name!r} holds values other than true/false (or 0/1).", "send booleans."
            )
        return raw.astype(target)
    info = np.iinfo(target)
    if raw.size and (raw.min() < info.min or _above(raw.max(), info.max)):
        raise BadRequest(
            f"input {name!r} holds values outside {datatype}'s range {info.min}..{info.max}.",
            f"send values that fit {datatype}.",
        )
    return raw.astype(target)


def _above(value: Any, top: int) -> bool:
    """``value > top``, exact for floats too: ``top + 1`` is a power of two, which a float
    holds exactly (``float(2**63 - 1)`` would round up to ``2**63``)."""
    return bool(value >= float(top + 1)) if isinstance(value, np.floating) else bool(value > top)


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
