"""Run inside the reference venv: PaddleClas configs as PaddleClas's own loader reads them.

Usage: python paddleclas_config.py REQUESTS.json
REQUESTS.json is a list of {"path": CONFIG.yaml, "options": ["KEY=VALUE", ...]}. Prints, as
the last line, a JSON list with ``ppcls.utils.config.get_config(path, overrides=options)``
for each: the dict PaddleClas's tools/train.py hands its engine (string literals evaluated,
-o overrides applied as PaddleClas applies them).
"""

import json
import sys

from paddleclas.ppcls.utils.config import convert_to_dict, get_config

with open(sys.argv[1]) as fh:
    requests = json.load(fh)
configs = [
    convert_to_dict(get_config(r["path"], overrides=r["options"], show=False)) for r in requests
]
# PaddleClas prints "A new field ... detected!" on stdout for new keys: the JSON is the last line
print("\n" + json.dumps(configs))
