"""The handler-contract example in examples/ runs as documented: profile, serve, answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from kairos.client.launch import running_router
from kairos.profiles import load_profiles
from tests.serving.helpers import call

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_custom_handler_example_profiles_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The profiling run and the router's workers import the handler from examples/.
    monkeypatch.setenv("PYTHONPATH", f"{EXAMPLES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    profiles, prices = tmp_path / "profiles.csv", tmp_path / "prices.csv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kairos",
            "profile",
            "--model",
            "ctr",
            "--instance-type",
            "local.half",
            "--handler",
            "custom_handler:CtrModel",
            "--batch-sizes",
            "1,100",
            "--runs",
            "3",
            "--out",
            str(profiles),
            "--prices-out",
            str(prices),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert load_profiles(profiles).get("ctr", "local.half").max_batch == 100
    args = [
        "--model",
        "ctr",
        "--qos-ms",
        "50",
        "--profiles",
        str(profiles),
        "--prices",
        str(prices),
        "--pool",
        "local.half=1",
        "--handler",
        "custom_handler:CtrModel",
        "--batch-mix",
        "fixed:50",  # within the profiled batches (1..100)
    ]
    with running_router(args, ready_timeout_s=60) as router:
        meta = json.loads(call(f"{router.url}/v2/models/ctr").text)
        rng = np.random.default_rng(0)
        request = {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [2, 16],
                    "data": rng.random(32).round(3).tolist(),
                },
                {"name": "ids", "datatype": "INT64", "shape": [2, 4], "data": list(range(8))},
            ]
        }
        reply = call(f"{router.url}/v2/models/ctr/infer", orjson.dumps(request))
    assert [t["name"] for t in meta["inputs"]] == ["features", "ids"]
    assert reply.status == 200, reply.text
    (out,) = json.loads(reply.text)["outputs"]
    assert out["name"] == "probability" and out["shape"] == [2, 1]
    assert all(0 < p < 1 for p in out["data"])
