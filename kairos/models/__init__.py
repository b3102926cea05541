"""The paper's five recommendation models in PyTorch: rm2, wnd, mtwnd, dien, ncf.

``load_model(name, seed, threads)`` builds one (deterministic weights, nothing downloaded)
and returns a ``ModelRunner``: a handler taking ``{input name: ndarray}`` and returning
``{output name: ndarray}``, with ``inputs``/``outputs`` declarations (KServe v2 names,
datatypes and shapes, batch first). PyTorch is the optional extra ``kairos[models]``; this
module imports it only when a model is built. Sizes and sources: docs/models.md.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from kairos.errors import ConfigError
from kairos.registry import Registry

if TYPE_CHECKING:
    from kairos.models.base import ModelRunner, RecModel

# By dotted path: naming or checking a model imports nothing (no torch); ``get`` loads it.
MODELS: Registry[type[RecModel]] = Registry(
    "built-in model", "pick a built-in model, or serve your own with --handler MODULE:CALLABLE."
)
MODELS.add_path("rm2", "kairos.models.dlrm:DlrmRM2")
MODELS.add_path("wnd", "kairos.models.wide_deep:WideDeep")
MODELS.add_path("mtwnd", "kairos.models.wide_deep:MultiTaskWideDeep")
MODELS.add_path("dien", "kairos.models.dien:Dien")
MODELS.add_path("ncf", "kairos.models.ncf:NeuralCF")
MODEL_NAMES: tuple[str, ...] = MODELS.names()
DEFAULT_SEED = 0


def require_torch() -> None:
    """Raise a ConfigError with the install line when PyTorch is missing.

    It looks the package up without importing it: importing torch costs about 3 s of CPU,
    which a process that only checks (``kairos profile``: the worker runs the model) need not
    pay; a process that builds a model imports it right after."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            "the built-in models need PyTorch, which is not installed.",
            "install the extra: python -m pip install 'kairos[models]' (torch==2.13.0).",
        )


def check_model_name(name: str) -> str:
    return MODELS.check(name)


def build_model(name: str, seed: int = DEFAULT_SEED) -> RecModel:
    """The ``torch.nn.Module`` of a built-in model, in eval mode, weights drawn from ``seed``."""
    check_model_name(name)
    require_torch()  # before the model's module imports it: the install line, not a traceback
    model: RecModel = MODELS.get(name)(seed=seed)
    return model.eval()


def load_model(name: str, seed: int = DEFAULT_SEED, threads: int = 1) -> ModelRunner:
    """A built-in model ready to serve with ``threads`` intra-op threads."""
    if threads < 1:
        raise ConfigError(f"thread count {threads} is below 1.", "pass --threads 1 or more.")
    model = build_model(name, seed)
    from kairos.models.base import ModelRunner

    return ModelRunner(model, threads)
