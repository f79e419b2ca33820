"""INT8 post-training quantization with NNCF, for OpenVINO's VNNI / AVX2 integer kernels.

Only calibration images are needed (no labels, no training): NNCF runs them through the
FP32 model to choose per-tensor activation ranges and per-channel weight scales.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def load_calibration(
    paths: Sequence[str | os.PathLike], preprocess: Any = None, *, limit: int = 300
) -> np.ndarray:
    """Calibration batch (N x 3 x crop x crop float32) from image files and/or folders.

    :param preprocess: the registry entry's ``Preprocess`` (PaddleClas's default if None).
    :param limit: use at most this many images (NNCF's default subset is 300).
    :raises ValueError: no image found; a file that fails to decode is named.
    """
    from res2net.data.images import collect_images
    from res2net.data.transforms import preprocess as preprocess_image

    files = collect_images(paths)[:limit]
    if not files:
        raise ValueError(f"no calibration images found in {', '.join(map(str, paths))}")
    return np.stack([preprocess_image(f, preprocess).numpy() for f in files])


def quantize_openvino(ov_model: Any, calibration: np.ndarray, *, batch_size: int = 1) -> Any:
    """An INT8 ``openvino.Model`` from an FP32 one and preprocessed calibration images.

    Uses NNCF's default (symmetric, "performance") preset: per-channel INT8 weights and
    per-tensor activations, the layout OpenVINO's VNNI kernels run fastest.
    """
    import nncf

    batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]
    dataset = nncf.Dataset(batches)
    return nncf.quantize(ov_model, dataset, subset_size=len(calibration))
