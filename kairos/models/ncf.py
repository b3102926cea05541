"""Neural Collaborative Filtering (He et al., 2017; NeuMF), as DeepRecInfra sizes it.

A user id and an item id each look up two embeddings: one pair is multiplied element-wise
(generalised matrix factorisation), the other pair is concatenated and goes through an MLP;
both results are concatenated and a last layer gives the interaction probability. Sizes and
changes: docs/models.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kairos.models.base import ID_DATATYPE, EmbeddingTables, RecModel, generator, mlp
from kairos.protocol.tensors import TensorSpec


@dataclass(frozen=True)
class NcfConfig:
    # Published as they are (86 MB in all): user and item tables for the factorisation
    # branch, then user and item tables for the MLP branch.
    mf_rows: tuple[int, int] = (140_000, 140_000)
    mlp_rows: tuple[int, int] = (28_000, 28_000)
    embedding_dim: int = 64
    mlp: tuple[int, ...] = (256, 256, 128, 64)
    predict_mlp: tuple[int, ...] = (64, 1)


class NeuralCF(RecModel):
    name = "ncf"

    def __init__(self, cfg: NcfConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = cfg or NcfConfig()
        gen = generator(seed)
        dim = cfg.embedding_dim
        self.tables = EmbeddingTables([*cfg.mf_rows, *cfg.mlp_rows], dim, gen)
        self.tower = mlp([2 * dim, *cfg.mlp], gen)
        self.predict = mlp([dim + cfg.mlp[-1], *cfg.predict_mlp], gen, relu_last=False)
        self.dim = dim
        self.inputs = (
            TensorSpec("user", ID_DATATYPE, (-1, 1)),
            TensorSpec("item", ID_DATATYPE, (-1, 1)),
        )
        self.outputs = (TensorSpec("score", "FP32", (-1, 1)),)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        user, item = x["user"], x["item"]
        emb = self.tables(torch.cat([user, item, user, item], dim=1))
        d = self.dim
        factorised = emb[:, :d] * emb[:, d : 2 * d]
        tower = self.tower(emb[:, 2 * d :])
        return {"score": torch.sigmoid(self.predict(torch.cat([factorised, tower], dim=1)))}
