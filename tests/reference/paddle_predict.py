"""Run inside the reference venv: PaddleClas's predictor path on raw image files.

Usage: python paddle_predict.py MODEL_NAME WEIGHTS.pdparams OUT.json IMAGE...
Builds the PaddleClas network, loads the weights with paddle.load, then for each image:
predict_cls.py's reading + preprocessing (paddle_preprocess.py), the forward pass, the
softmax that PaddleClas's export appends, and its Topk post-processing (top 5, with the
ImageNet label list PaddleClas ships). Writes a JSON list of Topk's result dicts.
"""

import json
import os
import sys

import numpy as np
import paddle
import paddleclas
from paddle_preprocess import paddle_ops, paddle_read
from paddleclas.deploy.python.postprocess import Topk
from paddleclas_networks import network_class

LABELS = os.path.join(
    os.path.dirname(paddleclas.__file__), "ppcls", "utils", "imagenet1k_label_list.txt"
)


def main() -> None:
    name, weights, out, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    model = network_class(name)()
    model.set_state_dict(paddle.load(weights))
    model.eval()
    ops = paddle_ops()
    batch = np.stack([paddle_read(p, ops) for p in paths])
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(model(paddle.to_tensor(batch))).numpy()
    results = Topk(topk=5, class_id_map_file=LABELS)(probs, file_names=paths)
    with open(out, "w") as fh:
        json.dump(results, fh)
    print(name, "predicted", len(results))


if __name__ == "__main__":
    main()
