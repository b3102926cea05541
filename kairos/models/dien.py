"""Deep Interest Evolution Network (Zhou et al., 2019), as DeepRecInfra sizes it.

A user's last 40 behaviours (item ids) are embedded and read by a GRU (interest
extraction); each hidden state is scored against the candidate ad (attention, softmax over
the sequence); a GRU whose update gate is scaled by that score (AUGRU, interest evolution)
reads the hidden states again, and its last state, with the user profile, candidate and
context embeddings, goes through an MLP to a click probability. Sizes and changes:
docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from kairos.models.base import ID_DATATYPE, EmbeddingTables, RecModel, generator, linear, mlp
from kairos.protocol.tensors import TensorSpec


@dataclass(frozen=True)
class DienConfig:
    history: int = 40  # one table per behaviour position, as DeepRecInfra has it
    # Published: 41 tables of 500,000 rows (profile + behaviours), candidate and context
    # tables of 5,000,000 (3.9 GB in all); rows cut 25x, their ratio kept.
    profile_rows: int = 20_000
    history_rows: int = 20_000
    candidate_rows: int = 200_000
    context_rows: int = 200_000
    embedding_dim: int = 32
    hidden: int = 64
    top_mlp: tuple[int, ...] = (200, 80, 2)


class AttentionGRU(nn.Module):
    """AUGRU: a GRU whose update gate is multiplied by each step's attention score."""

    def __init__(self, n_in: int, hidden: int, gen: torch.Generator) -> None:
        super().__init__()
        self.hidden = hidden
        self.input_gates = linear(n_in, 3 * hidden, gen)
        self.hidden_gates = linear(hidden, 3 * hidden, gen)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(hidden)
            self.hidden_gates.weight.uniform_(-bound, bound, generator=gen)

    def forward(self, seq: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``seq`` [B, T, n_in], ``scores`` [B, T] -> last hidden state [B, hidden]."""
        gi = self.input_gates(seq)  # every step's input projection in one matmul
        h = seq.new_zeros(seq.shape[0], self.hidden)
        for t in range(seq.shape[1]):
            i_r, i_u, i_n = gi[:, t].chunk(3, dim=1)
            h_r, h_u, h_n = self.hidden_gates(h).chunk(3, dim=1)
            reset = torch.sigmoid(i_r + h_r)
            update = torch.sigmoid(i_u + h_u) * scores[:, t : t + 1]
            new = torch.tanh(i_n + reset * h_n)
            h = h + update * (new - h)
        return h


class Dien(RecModel):
    name = "dien"

    def __init__(self, cfg: DienConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = cfg or DienConfig()
        gen = generator(seed)
        rows = [
            cfg.profile_rows,
            *([cfg.history_rows] * cfg.history),
            cfg.candidate_rows,
            cfg.context_rows,
        ]
        self.cfg = cfg
        self.tables = EmbeddingTables(rows, cfg.embedding_dim, gen)
        self.extractor = nn.GRU(cfg.embedding_dim, cfg.hidden, batch_first=True)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(cfg.hidden)
            for p in self.extractor.parameters():
                p.uniform_(-bound, bound, generator=gen)
        self.attend = linear(cfg.embedding_dim, cfg.hidden, gen)
        self.evolve = AttentionGRU(cfg.hidden, cfg.hidden, gen)
        self.top = mlp([cfg.hidden + 3 * cfg.embedding_dim, *cfg.top_mlp], gen, relu_last=False)
        self.inputs = (
            TensorSpec("user", ID_DATATYPE, (-1, 1)),
            TensorSpec("history", ID_DATATYPE, (-1, cfg.history)),
            TensorSpec("candidate", ID_DATATYPE, (-1, 1)),
            TensorSpec("context", ID_DATATYPE, (-1, 1)),
        )
        self.outputs = (TensorSpec("score", "FP32", (-1, 1)),)

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = torch.cat([x["user"], x["history"], x["candidate"], x["context"]], dim=1)
        batch, d, n = ids.shape[0], self.cfg.embedding_dim, self.cfg.history
        emb = self.tables(ids).view(batch, n + 3, d)
        user, behaviours, candidate, context = emb[:, 0], emb[:, 1 : n + 1], emb[:, -2], emb[:, -1]
        states, _ = self.extractor(behaviours)  # [B, T, hidden]
        query = self.attend(candidate).unsqueeze(2)  # [B, hidden, 1]
        scores = torch.softmax(torch.bmm(states, query).squeeze(2), dim=1)
        interest = self.evolve(states, scores)
        logits = self.top(torch.cat([interest, user, candidate, context], dim=1))
        return {"score": torch.softmax(logits, dim=1)[:, 1:]}
