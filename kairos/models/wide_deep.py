"""Wide & Deep (Cheng et al., 2016) and Multi-Task Wide & Deep, as DeepRecInfra sizes them.

Wide & Deep: one id per sparse feature looks up a 32-wide embedding, the embeddings and the
raw dense features are concatenated and a deep MLP gives a logit; a linear model over the
dense features (the wide part) adds its own logit, and the sum goes through a sigmoid.
Multi-Task Wide & Deep shares the embeddings and the first MLP layers, then runs one MLP
head per task (YouTube's multi-objective ranking, Zhao et al., 2019) and returns one
probability per task. Sizes and changes: docs/models.md.
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
    linear,
    mlp,
)
from kairos.protocol.tensors import TensorSpec


@dataclass(frozen=True)
class WideDeepConfig:
    dense_features: int = 512
    tables: int = 27
    rows_per_table: int = 40_000  # published 1,000,000 (3.5 GB in all); see docs/models.md
    embedding_dim: int = 32
    deep_mlp: tuple[int, ...] = (1024, 512, 256, 1)


@dataclass(frozen=True)
class MultiTaskConfig:
    dense_features: int = 512
    # 41 tables of 500,000 rows and 2 of 5,000,000 published (2.6 + 1.3 GB); ratio kept.
    table_rows: tuple[int, ...] = (20_000,) * 41 + (200_000,) * 2
    embedding_dim: int = 32
    shared_mlp: tuple[int, ...] = (1024, 512)
    task_mlp: tuple[int, ...] = (256, 128, 1)
    tasks: int = 2


def _dense_and_ids(dense: int, tables: int) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec("dense", DENSE_DATATYPE, (-1, dense)),
        TensorSpec("sparse", ID_DATATYPE, (-1, tables)),
    )


class WideDeep(RecModel):
    name = "wnd"

    def __init__(self, cfg: WideDeepConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = cfg or WideDeepConfig()
        gen = generator(seed)
        self.tables = EmbeddingTables([cfg.rows_per_table] * cfg.tables, cfg.embedding_dim, gen)
        width = cfg.dense_features + cfg.tables * cfg.embedding_dim
        self.deep = mlp([width, *cfg.deep_mlp], gen, relu_last=False)
        self.wide = linear(cfg.dense_features, 1, gen)
        self.inputs = _dense_and_ids(cfg.dense_features, cfg.tables)
        self.outputs = (TensorSpec("score", "FP32", (-1, 1)),)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dense = x["dense"]
        deep_in = torch.cat([dense, self.tables(x["sparse"])], dim=1)
        return {"score": torch.sigmoid(self.deep(deep_in) + self.wide(dense))}


class MultiTaskWideDeep(RecModel):
    name = "mtwnd"

    def __init__(self, cfg: MultiTaskConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = cfg or MultiTaskConfig()
        gen = generator(seed)
        self.tables = EmbeddingTables(cfg.table_rows, cfg.embedding_dim, gen)
        width = cfg.dense_features + len(cfg.table_rows) * cfg.embedding_dim
        self.shared = mlp([width, *cfg.shared_mlp], gen)
        self.heads = torch.nn.ModuleList(
            mlp([cfg.shared_mlp[-1], *cfg.task_mlp], gen, relu_last=False) for _ in range(cfg.tasks)
        )
        self.inputs = _dense_and_ids(cfg.dense_features, len(cfg.table_rows))
        self.outputs = (TensorSpec("scores", "FP32", (-1, cfg.tasks)),)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        shared = self.shared(torch.cat([x["dense"], self.tables(x["sparse"])], dim=1))
        logits = torch.cat([head(shared) for head in self.heads], dim=1)
        return {"scores": torch.sigmoid(logits)}
