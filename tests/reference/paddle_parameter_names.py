"""Run inside the reference venv: PaddleClas's own table of structured name -> parameter
name, as paddle.save stores it under ``StructuredToParameterName@@``.

Usage: python paddle_parameter_names.py OUT.json MODEL_NAME...
Writes {MODEL_NAME: {structured name: parameter name}} for each network, built with
PaddleClas's code (random weights; only the names matter).
"""

import json
import sys

import paddle
from paddleclas_networks import network_class


def main() -> None:
    out, names = sys.argv[1], sys.argv[2:]
    tables = {}
    for name in names:
        # A fresh name scope per network: Paddle refuses a parameter name used before.
        with paddle.utils.unique_name.guard():
            model = network_class(name)()
        tables[name] = {key: value.name for key, value in model.state_dict().items()}
    with open(out, "w") as fh:
        json.dump(tables, fh)
    print("names of", len(tables), "networks")


if __name__ == "__main__":
    main()
