"""The router's HTTP API as an OpenAPI 3 document, served at ``GET /v2/openapi.json``.

It describes what ``kairos serve`` answers: the KServe v2 (Open Inference Protocol) health,
metadata, readiness and inference endpoints, the binary tensor data extension (the
``Inference-Header-Content-Length`` header and an ``application/octet-stream`` body), the
Prometheus ``/metrics`` text, every status each endpoint can give and the error body
``{"error": "<what is wrong and how to fix it>"}``. A router fills in its model name (the
only value of ``{model}`` it serves) and, once a worker has described it, an example request
that matches the model's signature. ``tests/serving/router/test_openapi.py`` runs schemathesis
against a live router with this document: no 5xx, no answer outside the document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from kairos import __version__
from kairos.protocol.api import OPENAPI_PATH
from kairos.protocol.tensors import BINARY_HEADER, DATATYPES, TensorSpec
from kairos.serving.router.http import JSON, HttpResponse


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json_content(_ref("Error"))}
    if headers:
        out["headers"] = headers
    return out


HEADER_ALLOW = {
    "Allow": {
        "description": "The method this path takes.",
        "schema": {"type": "string"},
        "required": True,
    }
}
HEADER_RETRY = {
    "Retry-After": {
        "description": "Seconds after which a retry may succeed.",
        "schema": {"type": "string"},
        "required": True,
    }
}
HEADER_AUTH = {
    "WWW-Authenticate": {
        "description": "The bearer challenge.",
        "schema": {"type": "string"},
        "required": True,
    }
}

COMMON = {
    "401": _error(
        "A bearer token is required (the router runs with --api-token) and was missing or wrong.",
        HEADER_AUTH,
    ),
    "405": _error("The path does not take this method.", HEADER_ALLOW),
}


def _schemas() -> dict[str, Any]:
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "shape": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "-1 is a free dimension; dimension 0 is the batch.",
            },
        },
    }
    request_input = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            "data": {
                "type": "array",
                "items": {"type": "number"},
                "description": "Values flattened in row-major order; prod(shape) of "
                "them. Absent when the tensor's bytes follow the JSON "
                "part (binary extension).",
            },
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_size": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Bytes of this tensor after the JSON "
                        "part: prod(shape) x element size.",
                    }
                },
            },
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What is wrong, and how to fix it."}
            },
        },
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Live": {
            "type": "object",
            "required": ["live"],
            "properties": {"live": {"type": "boolean"}},
        },
        "Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {"ready": {"type": "boolean"}},
        },
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
        },
        "TensorMetadata": tensor_meta,
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs", "parameters"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("TensorMetadata")},
                "parameters": {
                    "type": "object",
                    "description": "Kairos extras: pool, policy, "
                    "qos_ms, time_scale, max_batch, capacity_hint_qps, cost_per_hr "
                    "and workers[] (instance, instance_type, address, up, pid).",
                },
            },
        },
        "RequestInput": request_input,
        "Traffic": {
            "type": "object",
            "required": ["window_s", "queries", "rate_qps", "pool", "model", "policy"],
            "properties": {
                "window_s": {"type": "number"},
                "span_s": {"type": "number"},
                "queries": {"type": "integer"},
                "rate_qps": {"type": "number"},
                "mean_batch": {"type": "number", "nullable": True},
                "mix": {"type": "object", "nullable": True},
                "model": {"type": "string"},
                "qos_ms": {"type": "number"},
                "policy": {"type": "string"},
                "pool": {"type": "string"},
                "cost_per_hr": {"type": "number"},
                "bound_qps": {"type": "number", "nullable": True},
                "allowable_qps": {"type": "number", "nullable": True},
                "utilisation": {"type": "number", "nullable": True},
            },
        },
        "PoolView": {
            "type": "object",
            "required": ["pool", "workers"],
            "properties": {
                "pool": {"type": "string"},
                "workers": {"type": "array", "items": {"type": "object"}},
            },
        },
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ResponseOutput": {
            "type": "object",
            "required": ["name", "datatype", "shape", "data"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string", "enum": list(DATATYPES)},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "data": {"type": "array"},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "id", "parameters", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {
                    "type": "string",
                    "nullable": True,
                    "description": "The request's id, or null if it had none.",
                },
                "parameters": {
                    "type": "object",
                    "description": "Kairos extras: instance, "
                    "instance_type, queue_ms, service_ms, latency_ms, qos_met, "
                    "attempts, overhead_ms.",
                },
                "outputs": {"type": "array", "items": _ref("ResponseOutput")},
            },
        },
    }


def _get(summary: str, ok: dict[str, Any], *extra: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    responses = {"200": ok, **COMMON, **dict(extra)}
    return {"get": {"summary": summary, "responses": responses}}


def _model_paths(
    model_param: dict[str, Any],
    version_param: dict[str, Any] | None,
    example: dict[str, Any] | None,
) -> dict[str, Any]:
    params = [model_param] + ([version_param] if version_param else [])
    base = "/v2/models/{model}" + ("/versions/{version}" if version_param else "")
    not_found = ("404", _error("No such model (or version) here."))
    infer_body: dict[str, Any] = {"schema": _ref("InferenceRequest")}
    if example is not None:
        infer_body["example"] = example
    infer = {
        "post": {
            "summary": "Run one query (a batch of samples) on the pool.",
            "parameters": [
                {
                    "name": BINARY_HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                    "description": "Binary tensor data extension: the length of the JSON part "
                    "that starts an application/octet-stream body; the tensors' "
                    "raw little-endian bytes follow it in input order.",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": infer_body,
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "The model's outputs.",
                    "content": _json_content(_ref("InferenceResponse")),
                },
                "400": _error(
                    "The request is malformed or does not match the model's "
                    "signature, its batch size is outside 1..max_batch, its body is "
                    "over --max-body-bytes, or (model mode) a value is not a finite "
                    "number of its datatype."
                ),
                **COMMON,
                "404": not_found[1],
                "408": _error("The request's head or body did not arrive in time."),
                "502": _error(
                    "The query failed on 3 workers in a row (each died or hung while serving it)."
                ),
                "503": _error(
                    "The queue is full, the router is draining, or no worker is up yet.",
                    HEADER_RETRY,
                ),
            },
        },
        "parameters": params,
    }
    meta = _get(
        "The model's metadata: signature and Kairos parameters.",
        {"description": "Metadata.", "content": _json_content(_ref("ModelMetadata"))},
        not_found,
    )
    ready_model = {"description": "Ready or not.", "content": _json_content(_ref("ModelReady"))}
    ready = _get("Whether the model takes queries.", ready_model, ("503", ready_model), not_found)
    return {
        base: meta | {"parameters": params},
        f"{base}/ready": ready | {"parameters": params},
        f"{base}/infer": infer,
    }


def _operations_paths() -> dict[str, Any]:
    """Kairos's own endpoints: observed traffic and resizing (see docs/runtime.md)."""
    pool_view = {"description": "The pool.", "content": _json_content(_ref("PoolView"))}
    return {
        "/v2/traffic": _get(
            "Observed arrival rate and batch mix over the traffic window; the pool's headroom.",
            {"description": "Traffic view.", "content": _json_content(_ref("Traffic"))},
        ),
        "/v2/admin/pool": _get("The running pool and each instance's state.", pool_view)
        | {
            "post": {
                "summary": "Resize: start the missing instances, drain and stop the extra ones.",
                "requestBody": {
                    "required": True,
                    "content": _json_content(
                        {
                            "type": "object",
                            "required": ["pool"],
                            "properties": {"pool": {"type": "string", "example": "r5n.large=4"}},
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "The new pool and the instances added and removed.",
                        "content": _json_content({"type": "object"}),
                    },
                    "400": _error(
                        'The body is not {"pool": "TYPE=N,..."} or names an unknown type.'
                    ),
                    **COMMON,
                },
            }
        },
    }


def openapi_document(
    model: str | None = None, signature: Sequence[TensorSpec] | None = None
) -> dict[str, Any]:
    """The document; ``model`` pins ``{model}`` to the served name, ``signature`` adds an
    example request of batch 1."""
    model_schema: dict[str, Any] = {"type": "string"}
    if model is not None:
        model_schema["enum"] = [model]
    model_param = {"name": "model", "in": "path", "required": True, "schema": model_schema}
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["1"]},
    }
    example = _example(signature) if signature else None
    ready = {"description": "Ready.", "content": _json_content(_ref("Ready"))}
    paths: dict[str, Any] = {
        "/v2": _get(
            "Server metadata.",
            {
                "description": "Name, version and extensions.",
                "content": _json_content(_ref("ServerMetadata")),
            },
        ),
        "/v2/health/live": _get(
            "Liveness (no token needed).",
            {"description": "Live.", "content": _json_content(_ref("Live"))},
        ),
        "/v2/health/ready": _get(
            "Readiness: a worker is up and the router is not draining (no token needed).",
            ready,
            ("503", ready),
        ),
        "/metrics": _get(
            "Prometheus metrics.",
            {
                "description": "Text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        ),
        OPENAPI_PATH: _get(
            "This document.",
            {"description": "OpenAPI 3.0 document.", "content": _json_content({"type": "object"})},
        ),
        **_model_paths(model_param, None, example),
        **_model_paths(model_param, version_param, example),
        **_operations_paths(),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Kairos router (KServe v2 / Open Inference Protocol)",
            "version": __version__,
            "description": 'Errors are {"error": message}; see docs/runtime.md and docs/limits.md.',
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only with --api-token; health paths never need it.",
                }
            },
        },
    }


def _example(signature: Sequence[TensorSpec]) -> dict[str, Any]:
    inputs = []
    for spec in signature:
        shape = [1] + [d if d >= 0 else 1 for d in spec.shape[1:]]
        value: Any = False if spec.datatype == "BOOL" else 1
        inputs.append(
            {
                "name": spec.name,
                "datatype": spec.datatype,
                "shape": shape,
                "data": [value] * math.prod(shape),
            }
        )
    return {"id": "example", "inputs": inputs}


def openapi_response(model: str, signature: Sequence[TensorSpec] | None) -> HttpResponse:
    """``GET /v2/openapi.json`` for a router serving ``model``."""
    return HttpResponse(200, orjson.dumps(openapi_document(model, signature)), JSON)
