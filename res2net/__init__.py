"""Res2Net image classifiers in PyTorch: PaddleClas's series and the original release's.

The public API is loaded lazily so that ``import res2net`` stays fast; torch and the
optional runtimes are imported only when a function that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from res2net.noise import quiet_known_noise  # noqa: E402

quiet_known_noise()

# Public name -> module that defines it.
_EXPORTS = {
    "list_models": "res2net.models.registry",
    "create_model": "res2net.builder",
    "build_model": "res2net.builder",
    "load_card": "res2net.card",
    "ModelCard": "res2net.card",
    "model_info": "res2net.models.registry",
    "get_entry": "res2net.models.registry",
    "Res2Net": "res2net.models.res2net",
    "Res2NetConfig": "res2net.models.res2net",
    "load_weights": "res2net.builder",
    "read_weight_file": "res2net.weights.io",
    "convert_weights": "res2net.builder",
    "WeightFileError": "res2net.weights.io",
    "Predictor": "res2net.deploy.predictor",
    "Prediction": "res2net.deploy.predictor",
    "preprocess": "res2net.data.transforms",
    "eval_transform": "res2net.data.transforms",
    "load_image": "res2net.data.images",
    "ImageDecodeError": "res2net.data.images",
    "imagenet_labels": "res2net.data.labels",
    "fetch_weights": "res2net.builder",
    "WeightDownloadError": "res2net.weights.hub",
    "create_runtime": "res2net.deploy.runtimes",
    "available_engines": "res2net.deploy.runtimes",
    "fuse_model": "res2net.deploy.fuse",
    "export_model": "res2net.deploy.export",
    "load_exported": "res2net.deploy.export",
    "ExportedModelError": "res2net.card",
    "ServeConfig": "res2net.deploy.server",
    "build_service": "res2net.deploy.server",
    "start_server": "res2net.deploy.server",
    "train": "res2net.engine.train",
    "load_config": "res2net.engine.config",
    "evaluate_folder": "res2net.engine.evaluate",
    "batch_predict": "res2net.batch",
    "evaluate_on_ray": "res2net.batch",
    "render_digits": "res2net.data.datasets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'res2net' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
