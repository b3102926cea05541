"""Fuzz a live router: thousands of random and mutated requests, counted by answer.

Starts ``kairos serve`` on loopback (model mode by default, so the worker decodes and runs
the built-in model on every accepted request) and sends, one at a time on fresh
connections, a seeded mix of: valid inference requests with one field replaced by random
JSON; valid ones with a value replaced by null, NaN, infinity, 1e300, text, a list...;
binary-extension requests with wrong header values, sizes or non-finite bytes; random JSON
bodies; random bytes; random methods on known and random paths; malformed HTTP. Expected:
every request gets an HTTP answer below 500 within the time limit. Prints the counts by
status and every 5xx or missing answer.

Usage: python scripts/fuzz_router.py [--requests 2000] [--seed 0] [--mode model|replay]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import sys
import time
from collections import Counter
from typing import Any

from kairos.client.http import ResponseReader
from kairos.client.launch import running_router
from kairos.client.loadgen import BodyFactory
from kairos.protocol.tensors import BINARY_HEADER, DATATYPES
from kairos.serving.worker.stand_in import StandInDlrm

TIMEOUT_S = 10.0
PATHS = [
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/metrics",
    "/v2/openapi.json",
    "/v2/models/dien",
    "/v2/models/dien/ready",
    "/v2/models/dien/infer",
    "/v2/models/dien/versions/1/infer",
    "/v2/models/dien/versions/2",
    "/v2/models/x/infer",
    "/",
    "/v2/models/",
    "/v2/models/dien/infer/extra",
    "/%00",
    "/v2/../v2",
]
ODD_VALUES: list[Any] = [
    None,
    "NaN",
    "Infinity",
    "-Infinity",
    1e300,
    -1e39,
    1e39,
    "x",
    True,
    [1],
    {"a": 1},
    2**64,
    -(2**63) - 1,
    2**63,
    0.5,
    -1,
    "",
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 7, 2**31, 2**63, 2**64, -(2**70), rng.randint(-999, 999)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e300, -1e300, math.nan, math.inf, 3.4e38, 1e-320])
    if kind == 4:
        return rng.choice(["", "FP32", "INT64", "dense", "x" * rng.randint(0, 40), "\u00e9\u0000"])
    if kind == 5:
        return rng.choice(list(DATATYPES))
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(
            ["name", "datatype", "shape", "data", "id", "inputs", "parameters", "q"]
        ): random_json(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def valid_doc(bodies: BodyFactory, rng: random.Random) -> dict[str, Any]:
    return json.loads(bodies.body(rng.choice([1, 2, 10, 100])))


def replace_at(doc: Any, rng: random.Random, value: Any) -> Any:
    """``doc`` with one randomly chosen node (at any depth) replaced by ``value``."""
    if not isinstance(doc, dict | list) or not doc or rng.random() < 0.25:
        return value
    if isinstance(doc, dict):
        key = rng.choice(list(doc))
        return doc | {key: replace_at(doc[key], rng, value)}
    k = rng.randrange(len(doc))
    return [*doc[:k], replace_at(doc[k], rng, value), *doc[k + 1 :]]


def http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def make_request(kind: str, rng: random.Random, bodies: BodyFactory) -> bytes:
    infer = "/v2/models/dien/infer"
    if kind == "mutated":
        doc = replace_at(valid_doc(bodies, rng), rng, random_json(rng))
        return http("POST", infer, json.dumps(doc).encode())
    if kind == "values":
        doc = valid_doc(bodies, rng)
        data = doc["inputs"][rng.randrange(len(doc["inputs"]))]["data"]
        data[rng.randrange(len(data))] = rng.choice(ODD_VALUES)
        return http("POST", infer, json.dumps(doc).encode())
    if kind == "binary":
        body, json_length = bodies.binary_body(rng.choice([1, 2, 10]))
        raw = bytearray(body)
        if rng.random() < 0.5:  # overwrite 4 bytes of tensor data (NaN, inf, garbage)
            at = rng.randrange(json_length, len(raw) - 4)
            raw[at : at + 4] = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff" * 4])
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
        header = rng.choice(
            [
                str(json_length),
                str(json_length + rng.randint(-20, 20)),
                "-1",
                "abc",
                "0",
                str(len(raw) + 5),
                "",
            ]
        )
        return http("POST", infer, bytes(raw), {BINARY_HEADER: header})
    if kind == "json":
        return http("POST", infer, json.dumps(random_json(rng)).encode())
    if kind == "bytes":
        return http("POST", infer, rng.randbytes(rng.randint(0, 300)))
    if kind == "route":
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
        return http(method, rng.choice(PATHS), rng.choice([b"", b"{}", b"[1]"]))
    return rng.choice(
        [  # malformed HTTP
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"POST /v2/models/dien/infer HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /v2/models/dien/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"GET /v2 HTTP/9.9\r\n\r\n",
        ]
    )


KINDS = {"mutated": 40, "values": 15, "binary": 15, "json": 10, "bytes": 5, "route": 10, "http": 5}


def send(host: str, port: int, raw: bytes) -> int | str:
    """The answer's status, or why there was none ("timeout", "reset", "closed")."""
    reader = ResponseReader()
    head_only = raw.startswith(b"HEAD ")  # no body follows: the status line is the answer
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            while not reader.done:
                chunk = sock.recv(65536)
                if head_only and chunk.startswith(b"HTTP/1.1 "):
                    return int(chunk[9:12])
                if not chunk:
                    reader.finish()
                    break
                reader.feed(chunk)
    except TimeoutError:
        return "timeout"
    except ConnectionError as exc:
        if not reader.done:
            return f"reset ({type(exc).__name__})"
    if reader.done:
        return reader.done[0].status
    return "closed without an answer"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["model", "replay"], default="model")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    bodies = BodyFactory(StandInDlrm().inputs, args.seed)
    router_args = [
        "--model",
        "dien",
        "--pool",
        "g4dn.xlarge=1,r5n.large=1",
        "--mode",
        args.mode,
        "--time-scale",
        "0.1",
    ]
    by_kind: dict[str, Counter[int | str]] = {k: Counter() for k in KINDS}
    bad: list[tuple[str, int | str, bytes]] = []
    with running_router(router_args) as router:
        host, port = router.url.removeprefix("http://").rsplit(":", 1)
        t0 = time.monotonic()
        kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=args.requests)
        for kind in kinds:
            raw = make_request(kind, rng, bodies)
            outcome = send(host, int(port), raw)
            by_kind[kind][outcome] += 1
            if not isinstance(outcome, int) or outcome >= 500:
                bad.append((kind, outcome, raw[:300]))
        wall_s = time.monotonic() - t0
        alive = router.get("/v2/health/ready")[0]
    total: Counter[int | str] = Counter()
    for kind, counts in by_kind.items():
        total.update(counts)
        print(f"{kind:8s} {sum(counts.values()):5d}  {dict(sorted(counts.items(), key=str))}")
    print(
        f"\n{args.requests} requests ({args.mode} mode) in {wall_s:.0f} s: "
        f"{dict(sorted(total.items(), key=str))}; router ready afterwards: {alive == 200}"
    )
    for kind, outcome, raw in bad[:20]:
        print(f"  [{kind}] {outcome}: {raw!r}")
    print(f"5xx or no answer: {len(bad)}")
    return 0 if not bad and alive == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
