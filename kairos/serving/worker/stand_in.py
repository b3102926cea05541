"""The torch-free stand-in for a recommendation model: a small DLRM in numpy.

Why it exists beside the real DLRM (``kairos.models.dlrm``, PyTorch, RM2's sizes):

- replay workers, which emulate an instance type by sleeping its profiled service time, still
  declare inputs (``dense``/``sparse``) so that clients, the load generator and the router's
  checks treat their traffic as recommendation queries. They advertise this model's small
  signature (116 bytes a sample in binary) rather than RM2's (32 bags of 120 ids, about
  16 KB a sample): the replayed live figures (bench_live, the conformance benchmark) were
  measured with these requests, so switching would change what they measure, and a replay
  worker must start without PyTorch;
- it serves as a real handler where PyTorch is not installed
  (``--handler kairos.serving.worker.stand_in:StandInDlrm``): the tests and the router fuzzer
  run a model end to end with it.

The real models are ``kairos.models`` (docs/models.md). Structure (Naumov et al., 2019, scaled
down): a bottom MLP embeds the dense features, one embedding table per sparse feature looks
up a vector (indices are hashed into the table with ``mod``, the usual hashing trick, so any
integer is a valid id), the pairwise dot products of all these vectors form the interaction
features, and a top MLP turns dense embedding plus interactions into a click probability.
Weights are seeded, so every worker running it computes the same scores for the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kairos.protocol.tensors import TensorSpec


@dataclass(frozen=True)
class StandInConfig:
    dense_features: int = 13
    sparse_features: int = 8
    table_rows: int = 10_000
    embedding_dim: int = 16
    bottom_hidden: int = 64
    top_hidden: int = 64
    seed: int = 0


class StandInDlrm:
    """Callable ``{"dense": [B, 13] float32, "sparse": [B, 8] int64} -> {"score": [B, 1]}``."""

    def __init__(self, config: StandInConfig | None = None) -> None:
        cfg = config or StandInConfig()
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)
        d = cfg.embedding_dim
        self.inputs, self.outputs = stand_in_signature(cfg)
        self._bottom = _mlp(rng, [cfg.dense_features, cfg.bottom_hidden, d])
        self._tables = rng.normal(0.0, d**-0.5, (cfg.sparse_features, cfg.table_rows, d)).astype(
            np.float32
        )
        n_vec = cfg.sparse_features + 1
        self._pairs = np.triu_indices(n_vec, k=1)
        self._top = _mlp(rng, [d + len(self._pairs[0]), cfg.top_hidden, 1])

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dense = np.asarray(inputs["dense"], dtype=np.float32)
        sparse = np.asarray(inputs["sparse"], dtype=np.int64) % self.config.table_rows
        z = _forward(self._bottom, dense, last_relu=True)
        feats = np.arange(self.config.sparse_features)
        emb = self._tables[feats[None, :], sparse]  # [B, F, d]
        vectors = np.concatenate([z[:, None, :], emb], axis=1)  # [B, F+1, d]
        gram = vectors @ vectors.transpose(0, 2, 1)
        interactions = gram[:, self._pairs[0], self._pairs[1]]
        logits = _forward(self._top, np.concatenate([z, interactions], axis=1), last_relu=False)
        return {"score": (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)}


def stand_in_signature(
    cfg: StandInConfig | None = None,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of the stand-in (the signature replay workers advertise)."""
    cfg = cfg or StandInConfig()
    inputs = (
        TensorSpec("dense", "FP32", (-1, cfg.dense_features)),
        TensorSpec("sparse", "INT64", (-1, cfg.sparse_features)),
    )
    return inputs, (TensorSpec("score", "FP32", (-1, 1)),)


def _mlp(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (
            rng.normal(0.0, (2.0 / n_in) ** 0.5, (n_in, n_out)).astype(np.float32),
            np.zeros(n_out, dtype=np.float32),
        )
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def _forward(
    layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, *, last_relu: bool
) -> np.ndarray:
    for k, (w, b) in enumerate(layers):
        x = x @ w + b
        if last_relu or k < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x
