"""The network, its registry and metadata (``create_model`` is :mod:`res2net.builder`'s).

Names are loaded on first use, so that listing models (the registry) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Bottle2neck": "res2net.models.res2net",
    "Res2Net": "res2net.models.res2net",
    "Res2NetConfig": "res2net.models.config",
    "create_model": "res2net.builder",
    "get_entry": "res2net.models.registry",
    "list_models": "res2net.models.registry",
    "model_info": "res2net.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'res2net.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
