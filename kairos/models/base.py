"""Building blocks shared by the five models, and the runner that serves one of them.

Every model is a ``torch.nn.Module`` whose ``forward`` takes a dict of named tensors and
returns a dict of named tensors, and which declares ``inputs`` and ``outputs`` (KServe v2
names, datatypes and shapes, batch first). ``ModelRunner`` wraps one for serving: numpy in,
numpy out, under ``torch.inference_mode`` with a fixed intra-op thread count, so it is a
handler in the worker's ``module:callable`` sense (docs/models.md, "Handler contract").

Weights come from a seeded ``torch.Generator``: the same seed gives the same model in every
process, nothing is read from disk or the network.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from kairos.protocol.tensors import TensorSpec

# Ids arrive as INT32: a DLRM RM2 query of 1,000 samples carries 3.84 million of them, which
# is 15.4 MB as INT32 and would not fit the router's default 16 MB body limit as INT64.
ID_DATATYPE = "INT32"
DENSE_DATATYPE = "FP32"


def generator(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """A linear layer with Glorot-normal weights drawn from ``gen`` and zero bias."""
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.normal_(0.0, math.sqrt(2.0 / (n_in + n_out)), generator=gen)
        layer.bias.zero_()
    return layer


def mlp(sizes: Sequence[int], gen: torch.Generator, *, relu_last: bool = True) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ReLU after each (but the last, unless
    ``relu_last``)."""
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(linear(n_in, n_out, gen))
        if relu_last or k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EmbeddingTables(nn.Module):
    """Several embedding tables of one width, stored as one matrix so a lookup is one kernel.

    ``forward(ids)`` takes ids of shape ``[B, T]`` (one id per table) or ``[B, T, L]`` (L ids
    per table, summed, as DLRM's SparseLengthsSum) and returns ``[B, T * dim]``. Any integer
    is a valid id: it is taken modulo its table's rows (the hashing trick production models
    use for unbounded id spaces).

    The id arithmetic (range check, modulo, each table's row offset) runs in numpy: on this
    machine torch's broadcast integer add took 12 ms for RM2's 3.84 million ids at batch
    1,000 and numpy's 1.2 ms (docs/models.md).
    """

    def __init__(self, rows: Sequence[int], dim: int, gen: torch.Generator) -> None:
        super().__init__()
        if sum(rows) >= 2**31:
            raise ValueError(f"{sum(rows)} rows in all do not fit INT32 row numbers")
        self.dim = dim
        self.n_tables = len(rows)
        weight = torch.empty(int(sum(rows)), dim)
        weight.uniform_(-(dim**-0.5), dim**-0.5, generator=gen)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self._rows = np.asarray(rows, dtype=np.int32)
        self._starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int32)
        self._min_rows = int(min(rows))

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Global row numbers (INT32) of ``ids`` (``[B, T]`` or ``[B, T, L]``)."""
        shape = (1, self.n_tables) + (1,) * (ids.ndim - 2)
        if ids.size and (ids.min() < 0 or ids.max() >= self._min_rows):
            ids = np.remainder(ids, self._rows.reshape(shape))
        return (ids + self._starts.reshape(shape)).astype(np.int32, copy=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        batch = ids.shape[0]
        flat = torch.from_numpy(self.rows_of(ids.numpy()))
        if ids.dim() == 2:
            return nn.functional.embedding(flat, self.weight).reshape(batch, -1)
        bags = nn.functional.embedding_bag(
            flat.reshape(batch * self.n_tables, -1), self.weight, mode="sum"
        )
        return bags.reshape(batch, -1)


class RecModel(nn.Module):
    """Base class: ``inputs``/``outputs`` declarations plus ``forward(dict) -> dict``."""

    name: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes of parameters and buffers (what the model adds to a process's memory)."""
        tensors = [*self.parameters(), *self.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)


def set_threads(threads: int) -> None:
    """Fix torch's intra-op thread count (one inter-op thread: a query runs alone)."""
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        # Settable once, before any parallel work; a second model in one process keeps it.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


class ModelRunner:
    """Serves one model: ``runner({name: ndarray}) -> {name: ndarray}``.

    ``prepare`` turns arrays into tensors (zero-copy), ``infer`` runs the model under
    ``torch.inference_mode``; a profile times the two apart (``kairos.serving.worker.handlers``).
    """

    def __init__(self, model: RecModel, threads: int) -> None:
        self.model = model.eval()
        self.threads = threads
        set_threads(threads)
        self.inputs = tuple(s.as_dict() for s in model.inputs)
        self.outputs = tuple(s.as_dict() for s in model.outputs)

    @property
    def name(self) -> str:
        return self.model.name

    def prepare(self, arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {
            s.name: torch.from_numpy(np.ascontiguousarray(arrays[s.name]))
            for s in self.model.inputs
        }

    def infer(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self.model(tensors)
        return {k: v.numpy() for k, v in out.items()}

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.infer(self.prepare(arrays))
