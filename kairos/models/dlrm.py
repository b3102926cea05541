"""DLRM in DeepRecInfra's RM2 configuration (Naumov et al., 2019; Gupta et al., 2020).

Dense features go through a bottom MLP; each of 32 sparse features is a bag of 120 ids
whose embeddings are summed (SparseLengthsSum); the bottom MLP's output and the 32 pooled
embeddings are concatenated (RM2's ``cat`` interaction) and a top MLP gives the click
probability. Sizes and what was changed to fit this machine: docs/models.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kairos.models.base import (
    DENSE_DATATYPE,
    ID_DATATYPE,
    EmbeddingTables,
    RecModel,
    generator,
    mlp,
)
from kairos.protocol.tensors import TensorSpec


@dataclass(frozen=True)
class DlrmConfig:
    dense_features: int = 256  # published bottom MLP 256-128-64
    bottom_mlp: tuple[int, ...] = (128, 64)
    tables: int = 32
    rows_per_table: int = 20_000  # published 500,000 (4.1 GB in all); see docs/models.md
    embedding_dim: int = 64
    lookups_per_table: int = 120
    top_mlp: tuple[int, ...] = (128, 64, 1)


class DlrmRM2(RecModel):
    name = "rm2"

    def __init__(self, cfg: DlrmConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = cfg or DlrmConfig()
        self.cfg = cfg
        gen = generator(seed)
        self.bottom = mlp([cfg.dense_features, *cfg.bottom_mlp], gen)
        self.tables = EmbeddingTables([cfg.rows_per_table] * cfg.tables, cfg.embedding_dim, gen)
        width = cfg.bottom_mlp[-1] + cfg.tables * cfg.embedding_dim
        self.top = mlp([width, *cfg.top_mlp], gen, relu_last=False)
        self.inputs = (
            TensorSpec("dense", DENSE_DATATYPE, (-1, cfg.dense_features)),
            TensorSpec("sparse", ID_DATATYPE, (-1, cfg.tables, cfg.lookups_per_table)),
        )
        self.outputs = (TensorSpec("score", "FP32", (-1, 1)),)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z = self.bottom(x["dense"])
        pooled = self.tables(x["sparse"])
        return {"score": torch.sigmoid(self.top(torch.cat([z, pooled], dim=1)))}
