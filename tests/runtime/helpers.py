"""Helpers for tests that start real routers and workers on loopback."""

from __future__ import annotations

from dataclasses import dataclass

from kairos.runtime.dlrm import TinyDlrm
from kairos.runtime.httpclient import request
from kairos.runtime.loadgen import BodyFactory

BODIES = BodyFactory(TinyDlrm().inputs, seed=0)


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]  # names lower-cased


def call(
    url: str,
    body: bytes | None = None,
    token: str | None = None,
    timeout_s: float = 30.0,
    json_length: int | None = None,
) -> Reply:
    """A request; ``json_length`` sends ``body`` in the binary tensor data extension."""
    headers = {"Content-Type": "application/json"}
    if json_length is not None:
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(json_length),
        }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = request(url, body, headers, timeout_s)
    return Reply(response.status, response.text, response.headers)


def double_handler(inputs: dict) -> dict:
    """A user model for ``--handler tests.runtime.helpers:double_handler``."""
    return {"doubled": inputs["x"] * 2}


double_handler.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]
