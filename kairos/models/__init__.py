"""The paper's five recommendation models in PyTorch: rm2, wnd, mtwnd, dien, ncf.

``load_model(name, seed, threads)`` builds one (deterministic weights, nothing downloaded)
and returns a ``ModelRunner``: a handler taking ``{input name: ndarray}`` and returning
``{output name: ndarray}``, with ``inputs``/``outputs`` declarations (KServe v2 names,
datatypes and shapes, batch first). PyTorch is the optional extra ``kairos[models]``; this
module imports it only when a model is built. Sizes and sources: docs/models.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kairos.errors import ConfigError

if TYPE_CHECKING:
    from kairos.models.base import ModelRunner, RecModel

# name -> (module, class)
_REGISTRY: dict[str, tuple[str, str]] = {
    "rm2": ("kairos.models.dlrm", "DlrmRM2"),
    "wnd": ("kairos.models.wide_deep", "WideDeep"),
    "mtwnd": ("kairos.models.wide_deep", "MultiTaskWideDeep"),
    "dien": ("kairos.models.dien", "Dien"),
    "ncf": ("kairos.models.ncf", "NeuralCF"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
DEFAULT_SEED = 0


def require_torch() -> None:
    """Raise a ConfigError with the install line when PyTorch is missing."""
    try:
        importlib.import_module("torch")
    except ImportError:
        raise ConfigError(
            "the built-in models need PyTorch, which is not installed.",
            "install the extra: python -m pip install 'kairos[models]' (torch==2.13.0).",
        ) from None


def check_model_name(name: str) -> str:
    if name not in _REGISTRY:
        raise ConfigError(
            f"model {name!r} has no built-in implementation (built in: {', '.join(MODEL_NAMES)}).",
            "pick a built-in model, or serve your own with --handler MODULE:CALLABLE.",
        )
    return name


def build_model(name: str, seed: int = DEFAULT_SEED) -> RecModel:
    """The ``torch.nn.Module`` of a built-in model, in eval mode, weights drawn from ``seed``."""
    check_model_name(name)
    require_torch()
    module_name, class_name = _REGISTRY[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    model: RecModel = cls(seed=seed)
    return model.eval()


def load_model(name: str, seed: int = DEFAULT_SEED, threads: int = 1) -> ModelRunner:
    """A built-in model ready to serve with ``threads`` intra-op threads."""
    if threads < 1:
        raise ConfigError(f"thread count {threads} is below 1.", "pass --threads 1 or more.")
    model = build_model(name, seed)
    from kairos.models.base import ModelRunner

    return ModelRunner(model, threads)
