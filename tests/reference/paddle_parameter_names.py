"""Run inside the reference venv: PaddleClas's own table of structured name -> parameter
name, as paddle.save stores it under ``StructuredToParameterName@@``.

Usage: python paddle_parameter_names.py OUT.json MODEL_NAME...
Writes {MODEL_NAME: {structured name: parameter name}} for each network, built with
PaddleClas's code (random weights; only the names matter).
"""

import importlib
import json
import sys

import paddle

MODULES = {
    "Res2Net50_26w_4s": "res2net",
    "Res2Net50_14w_8s": "res2net",
    "Res2Net50_vd_26w_4s": "res2net_vd",
    "Res2Net101_vd_26w_4s": "res2net_vd",
    "Res2Net200_vd_26w_4s": "res2net_vd",
}


def main() -> None:
    out, names = sys.argv[1], sys.argv[2:]
    tables = {}
    for name in names:
        module = importlib.import_module(
            "paddleclas.ppcls.arch.backbone.model_zoo." + MODULES[name]
        )
        # A fresh name scope per network: Paddle refuses a parameter name used before.
        with paddle.utils.unique_name.guard():
            model = getattr(module, name)()
        tables[name] = {key: value.name for key, value in model.state_dict().items()}
    with open(out, "w") as fh:
        json.dump(tables, fh)
    print("names of", len(tables), "networks")


if __name__ == "__main__":
    main()
