"""The five PyTorch models: declared tensors, real outputs, determinism, id hashing, memory."""

from __future__ import annotations

import numpy as np
import pytest

from kairos.errors import ConfigError
from kairos.models import MODEL_NAMES, build_model, check_model_name, load_model
from kairos.models.base import EmbeddingTables, generator
from tests.models.cache import example_inputs, runner

# Published configuration -> what each model declares (docs/models.md).
DECLARED = {
    "rm2": [("dense", "FP32", [-1, 256]), ("sparse", "INT32", [-1, 32, 120])],
    "wnd": [("dense", "FP32", [-1, 512]), ("sparse", "INT32", [-1, 27])],
    "mtwnd": [("dense", "FP32", [-1, 512]), ("sparse", "INT32", [-1, 43])],
    "dien": [
        ("user", "INT32", [-1, 1]),
        ("history", "INT32", [-1, 40]),
        ("candidate", "INT32", [-1, 1]),
        ("context", "INT32", [-1, 1]),
    ],
    "ncf": [("user", "INT32", [-1, 1]), ("item", "INT32", [-1, 1])],
}
OUTPUT_WIDTH = {"rm2": 1, "wnd": 1, "mtwnd": 2, "dien": 1, "ncf": 1}
MAX_PARAM_BYTES = 200e6  # each model stays well under the 1-2 GB a worker may take here


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_declares_its_tensors_and_answers_probabilities(name: str) -> None:
    r = runner(name)
    assert [(s["name"], s["datatype"], s["shape"]) for s in r.inputs] == DECLARED[name]
    out = r(example_inputs(r, 7))
    ((out_name, scores),) = out.items()
    assert [s["name"] for s in r.outputs] == [out_name]
    assert scores.shape == (7, OUTPUT_WIDTH[name]) and scores.dtype == np.float32
    assert np.all((scores > 0) & (scores < 1))
    assert np.unique(scores).size > 1, "every sample got the same score"
    assert r.model.nbytes < MAX_PARAM_BYTES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_sample_scores_the_same_alone_and_in_a_batch(name: str) -> None:
    r = runner(name)
    batch = example_inputs(r, 9, seed=3)
    together = next(iter(r(batch).values()))
    alone = next(iter(r({k: v[4:5] for k, v in batch.items()}).values()))
    np.testing.assert_allclose(alone[0], together[4], rtol=1e-4, atol=1e-6)


def test_weights_follow_the_seed() -> None:
    x = example_inputs(runner("ncf"), 5)
    a = load_model("ncf", seed=0)(x)["score"]
    b = load_model("ncf", seed=1)(x)["score"]
    np.testing.assert_array_equal(a, runner("ncf")(x)["score"])
    assert not np.allclose(a, b)


def test_any_integer_id_is_hashed_into_its_table() -> None:
    tables = EmbeddingTables([10, 7], 4, generator(0))
    ids = np.array([[3, 5], [-7, 12], [2**31 - 1, -1]], dtype=np.int32)
    rows = tables.rows_of(ids)
    np.testing.assert_array_equal(rows, [[3, 10 + 5], [3, 10 + 5], [7, 10 + 6]])
    bags = tables.rows_of(np.array([[[1, 11], [0, 8]]], dtype=np.int32))
    np.testing.assert_array_equal(bags, [[[1, 1], [10, 11]]])


def test_unknown_model_names_point_at_the_handler_contract() -> None:
    with pytest.raises(ConfigError, match="--handler"):
        check_model_name("bert")
    with pytest.raises(ConfigError, match="--threads"):
        load_model("ncf", threads=0)
    assert build_model("ncf").training is False
