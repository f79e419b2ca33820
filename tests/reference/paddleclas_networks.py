"""PaddleClas's own Res2Net networks by name, for the reference scripts beside this file
(run in the reference venv, .venv-ref, as ``python tests/reference/SCRIPT.py``)."""

import importlib

# The module of PaddleClas's ppcls/arch/backbone/model_zoo/ that defines each Res2Net.
MODULES = {
    "Res2Net50_26w_4s": "res2net",
    "Res2Net50_14w_8s": "res2net",
    "Res2Net50_vd_26w_4s": "res2net_vd",
    "Res2Net101_vd_26w_4s": "res2net_vd",
    "Res2Net200_vd_26w_4s": "res2net_vd",
}


def network_class(name: str):
    """PaddleClas's constructor of the Res2Net ``name`` (takes ``class_num=`` and friends)."""
    module = importlib.import_module("paddleclas.ppcls.arch.backbone.model_zoo." + MODULES[name])
    return getattr(module, name)
