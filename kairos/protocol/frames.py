"""Router-to-worker frames: what travels over the worker link, whatever the transport.

Framed TCP or gRPC with generic byte handlers (``kairos.serving.pool.transport``; no
``protoc`` step either way) carry *frames*: a 4-byte big-endian header length, a small JSON
header, then an opaque payload. The router forwards the client's request body as the payload
untouched (one parse in the router for validation, none re-encoded), and the worker answers
with the KServe ``outputs`` array as its payload, which the router splices into the HTTP
response without decoding it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import orjson

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


def frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return _HEADER_LEN.pack(len(head)) + head + payload


def split_frame(message: bytes) -> tuple[dict[str, Any], memoryview]:
    """The header and a view of the payload, without copying it (a request's payload can be
    megabytes, and every copy of fresh memory costs page faults: docs/runtime.md)."""
    if len(message) < _HEADER_LEN.size:
        raise ValueError(f"frame of {len(message)} bytes is shorter than its length prefix")
    (n,) = _HEADER_LEN.unpack_from(message)
    end = _HEADER_LEN.size + n
    view = memoryview(message)
    return orjson.loads(view[_HEADER_LEN.size : end]), view[end:]


def unframe(message: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the payload as bytes of its own."""
    header, payload = split_frame(message)
    return header, payload.tobytes()
