"""Helpers for tests that start real routers and workers on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from kairos.runtime.dlrm import TinyDlrm
from kairos.runtime.loadgen import BodyFactory

BODIES = BodyFactory(TinyDlrm().inputs, seed=0)


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]


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
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(json_length)}  # fmt: skip
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return Reply(resp.status, resp.read().decode(), dict(resp.headers))
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read().decode(), dict(err.headers))


def double_handler(inputs: dict) -> dict:
    """A user model for ``--handler tests.runtime.helpers:double_handler``."""
    return {"doubled": inputs["x"] * 2}


double_handler.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]
