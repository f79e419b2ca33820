"""ExecuTorch ``.pte`` exports (XNNPACK): FP32 equals PyTorch, INT8 keeps the accuracy of a
really trained model, and a damaged or swapped file is refused naming it.

The FP32 reference is eager PyTorch on weights whose logits tests/conftest.py first checks
against PaddleClas's own; the INT8 check scores a digits model trained with the project's
loop (conftest's ``digits_trained``) on its held-out images. Every ``.pte`` here runs in
ExecuTorch's own runtime (``executorch.runtime``), through ``load_exported``.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import assert_logits_match, top1

from res2net.deploy.export import (
    ExportedModelError,
    export_model,
    load_exported,
    metadata_path,
)
from res2net.deploy.int8 import load_calibration
from res2net.deploy.runtimes import create_runtime
from res2net.models.registry import get_entry

pytest.importorskip("executorch")

NAME = "Res2Net50_vd_26w_4s"


@pytest.fixture(scope="module")
def fp32_pte(vd50_with_reference, tmp_path_factory):
    model = vd50_with_reference[0]
    labels = [f"class {i}" for i in range(1000)]
    out = tmp_path_factory.mktemp("pte") / NAME
    return export_model(
        model, out, fmt="executorch", name=NAME, preprocess=get_entry(NAME).preprocess,
        labels=labels,
    )  # fmt: skip


@pytest.mark.slow
def test_fp32_pte_matches_eager_on_the_photos(fp32_pte, vd50_with_reference, photo_batch):
    model = vd50_with_reference[0]
    photos = photo_batch[0].numpy()
    eager = create_runtime(model, "eager")(photos)
    runtime = load_exported(fp32_pte)
    assert runtime.engine == "executorch"
    assert_logits_match(runtime(photos), eager)  # N photos, one program call each
    meta = runtime.metadata
    assert meta["format"] == "executorch" and meta["precision"] == "fp32"
    assert meta["input"]["shape"] == [1, 3, 224, 224] and meta["batch_sizes"] == [1]
    assert meta["preprocess"]["crop"] == 224 and meta["labels"][7] == "class 7"


@pytest.mark.slow
def test_int8_pte_keeps_digits_top1_within_a_point(digits_trained, tmp_path):
    model, pre = digits_trained["model"], digits_trained["preprocess"]
    images, labels = digits_trained["images"], digits_trained["labels"]
    fp32 = top1(create_runtime(model, "eager"), images, labels)
    assert fp32 >= 0.9, f"the digits model did not train (top-1 {fp32:.3f})"
    calib = load_calibration([digits_trained["train_dir"]], pre, limit=300)
    path = export_model(
        model, tmp_path / "digits_int8", fmt="executorch", preprocess=pre, int8_calibration=calib
    )
    runtime = load_exported(path)
    assert runtime.metadata["precision"] == "int8"
    assert runtime.metadata["quantizer"] == "pt2e-xnnpack"
    int8 = top1(runtime, images, labels)
    assert abs(int8 - fp32) <= 0.01, f"FP32 top-1 {fp32:.4f}, INT8 {int8:.4f}"
    # Really integer: the program holds int8 weights, about a quarter of the FP32 bytes.
    fp32_path = export_model(model, tmp_path / "digits_fp32", fmt="executorch", preprocess=pre)
    assert path.stat().st_size < 0.4 * fp32_path.stat().st_size


@pytest.fixture
def pte_copy(fp32_pte, tmp_path):
    dst = tmp_path / fp32_pte.name
    shutil.copy(fp32_pte, dst)
    shutil.copy(metadata_path(fp32_pte), metadata_path(dst))
    return dst


def test_truncated_pte_is_refused(pte_copy):
    data = pte_copy.read_bytes()
    pte_copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportedModelError, match=rf"{NAME}\.pte.*SHA-256 differs"):
        load_exported(pte_copy)


def test_swapped_pte_is_refused(pte_copy, tmp_path):
    """Another model's program under this name (its own metadata left behind) is refused."""
    from torch import nn

    from res2net.deploy.executorch import export_executorch

    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()  # lowers in seconds
    export_executorch(other, tmp_path / "other.pte", 8)
    shutil.copy(tmp_path / "other.pte", pte_copy)
    with pytest.raises(ExportedModelError, match=rf"{NAME}\.pte.*SHA-256 differs"):
        load_exported(pte_copy)


def test_truncated_pte_with_matching_checksum_is_refused_by_the_runtime(pte_copy):
    """Past the checksum (metadata rewritten to match), ExecuTorch's own loader refuses it."""
    data = pte_copy.read_bytes()
    pte_copy.write_bytes(data[: len(data) // 2])
    meta = json.loads(metadata_path(pte_copy).read_text())
    meta["files"][pte_copy.name] = hashlib.sha256(pte_copy.read_bytes()).hexdigest()
    metadata_path(pte_copy).write_text(json.dumps(meta))
    with pytest.raises(ExportedModelError, match=rf"{NAME}\.pte: executorch cannot load"):
        load_exported(pte_copy)


def test_image_of_another_size_is_refused(fp32_pte):
    runtime = load_exported(fp32_pte)
    with pytest.raises(ValueError, match=r"takes images of 3 x 224 x 224, got 3 x 192 x 192"):
        runtime(np.zeros((1, 3, 192, 192), np.float32))
