"""Run inside the reference venv: PaddleClas's own deploy preprocessing on image files.

Usage: python paddle_preprocess.py OUT.npz IMAGE...
Writes OUT.npz with one float32 3 x 224 x 224 array per image (key = its index in the
argument list). An image that cv2.imread cannot read (OpenCV 4.6 has no GIF decoder) is
decoded by Pillow to RGB instead and then goes through the same operators; a line
"pil-decoded INDEX PATH" says so, and "unreadable INDEX PATH" where neither can read it.

The pipeline is exactly deploy/python/predict_cls.py's: cv2.imread (IMREAD_COLOR), BGR ->
RGB by flipping the channel axis, then the operators listed in deploy/configs/
inference_cls.yaml, built by PaddleClas's own create_operators.
"""

import os
import sys

import cv2
import numpy as np
import paddleclas
import yaml
from paddleclas.deploy.python.preprocess import create_operators
from PIL import Image

CONFIG = os.path.join(
    os.path.dirname(paddleclas.__file__), "deploy", "configs", "inference_cls.yaml"
)


def paddle_ops() -> list:
    """PaddleClas's classification preprocessing operators, from its shipped config."""
    with open(CONFIG) as fh:
        config = yaml.safe_load(fh)
    return create_operators(config["PreProcess"]["transform_ops"])


def paddle_read(path: str, ops: list) -> "np.ndarray | None":
    """One image through predict_cls.py's reading and the config's operators."""
    img = cv2.imread(path)
    if img is None:
        return None
    img = img[:, :, ::-1]
    for op in ops:
        img = op(img)
    return np.asarray(img, dtype=np.float32)


def pil_read(path: str, ops: list) -> np.ndarray:
    """A file OpenCV cannot decode: Pillow's RGB pixels, then the same operators."""
    img = np.asarray(Image.open(path).convert("RGB"))
    for op in ops:
        img = op(img)
    return np.asarray(img, dtype=np.float32)


def main() -> None:
    out, paths = sys.argv[1], sys.argv[2:]
    ops = paddle_ops()
    arrays = {}
    for i, path in enumerate(paths):
        arr = paddle_read(path, ops)
        if arr is None:
            try:
                arr = pil_read(path, ops)
                print("pil-decoded", i, path)
            except OSError:
                print("unreadable", i, path)
                continue
        arrays[str(i)] = arr
    np.savez(out, **arrays)
    print("preprocessed", len(arrays), "of", len(paths))


if __name__ == "__main__":
    main()
