"""The network, its registry and metadata."""

from res2net.models.registry import create_model, get_entry, list_models, model_info
from res2net.models.res2net import Bottle2neck, Res2Net, Res2NetConfig

__all__ = [
    "Bottle2neck",
    "Res2Net",
    "Res2NetConfig",
    "create_model",
    "get_entry",
    "list_models",
    "model_info",
]
