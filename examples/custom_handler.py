"""Serving your own model with Kairos: a complete example of the handler contract.

A handler is any callable that takes ``{input name: numpy array}`` and returns ``{output
name: numpy array}`` (a single array is named ``output0``). A class is instantiated once per
worker, without arguments, before the worker reports ready: load weights there. Declaring
``inputs`` (and ``outputs``) is optional but recommended: the router then advertises them in
the KServe model metadata, clients can build requests from it, and every request is checked
against them (names, datatypes, shapes with -1 for any size; the first dimension is the
batch) before your code runs. Floating-point inputs always arrive finite. A handler that
raises answers that query with HTTP 500 and keeps serving.

Profile it on each instance type, plan, and serve it (from the folder holding this file,
or with it on PYTHONPATH)::

    kairos profile --model ctr --instance-type local.half --handler custom_handler:CtrModel \
        --out profiles.csv --prices-out prices.csv
    kairos profile --model ctr --instance-type local.quarter --handler custom_handler:CtrModel \
        --out profiles.csv --prices-out prices.csv
    kairos plan --model ctr --qos-ms 20 --profiles profiles.csv --prices prices.csv \
        --budget-per-hr 0.1
    kairos serve --model ctr --qos-ms 20 --profiles profiles.csv --prices prices.csv \
        --pool local.half=1,local.quarter=1 --handler custom_handler:CtrModel
"""

from __future__ import annotations

import numpy as np

FEATURES = 16
ID_FIELDS = 4
BUCKETS = 1000


class CtrModel:
    """A click-through-rate model: hashed id embeddings plus dense features, one layer."""

    inputs = [
        {"name": "features", "datatype": "FP32", "shape": [-1, FEATURES]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, ID_FIELDS]},
    ]
    outputs = [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}]

    def __init__(self) -> None:
        rng = np.random.default_rng(7)  # your weights would be loaded from your own storage
        self.embeddings = rng.normal(0.0, 0.1, (ID_FIELDS, BUCKETS, 8)).astype(np.float32)
        self.weights = rng.normal(0.0, 0.2, FEATURES + ID_FIELDS * 8).astype(np.float32)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = inputs["ids"] % BUCKETS
        looked_up = self.embeddings[np.arange(ID_FIELDS), ids]  # [batch, fields, 8]
        x = np.concatenate([inputs["features"], looked_up.reshape(len(ids), -1)], axis=1)
        logit = x @ self.weights
        return {"probability": (1.0 / (1.0 + np.exp(-logit)))[:, None].astype(np.float32)}
