"""Each export format loads in its runtime, matches eager FP32, and refuses bad files clearly."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import assert_logits_match

from res2net.deploy.export import (
    FORMATS,
    ExportedModelError,
    export_model,
    load_exported,
    metadata_path,
)
from res2net.models.registry import get_entry

NAME = "Res2Net50_vd_26w_4s"


@pytest.fixture(scope="module")
def exported(vd50_with_reference, tmp_path_factory):
    """FORMAT -> path of the exported file, made once per module."""
    out = tmp_path_factory.mktemp("exports")
    model = vd50_with_reference[0]
    labels = [f"class {i}" for i in range(1000)]
    made = {}

    def get(fmt: str):
        if fmt not in made:
            made[fmt] = export_model(
                model, out / fmt / NAME, fmt=fmt, name=NAME,
                preprocess=get_entry(NAME).preprocess, labels=labels,
            )  # fmt: skip
        return made[fmt]

    return get


@pytest.mark.slow
# .pte (one image per call, lowering takes a minute): tests/test_executorch.py.
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "executorch"])
def test_export_loads_and_matches_eager(fmt, exported, vd50_with_reference):
    _, batch, eager = vd50_with_reference
    path = exported(fmt)
    assert path.suffix == FORMATS[fmt]
    runtime = load_exported(path)
    assert_logits_match(runtime(batch), eager)
    assert_logits_match(runtime(batch[:1]), eager[:1])  # dynamic batch
    if fmt == "openvino":  # OpenVINO's own reading: FP32, not its BF16 default on AMX CPUs
        assert runtime.inference_precisions() == {"f32"}
    meta = runtime.metadata
    assert meta["model"] == NAME and meta["format"] == fmt and meta["num_classes"] == 1000
    assert meta["preprocess"]["crop"] == 224 and meta["preprocess"]["mean"][0] == 0.485
    assert meta["labels"][7] == "class 7" and meta["output"] == "logits"


@pytest.mark.slow
def test_onnx_also_runs_in_openvino(exported, vd50_with_reference):
    _, batch, eager = vd50_with_reference
    runtime = load_exported(exported("onnx"), "openvino")
    assert_logits_match(runtime(batch), eager)
    assert runtime.inference_precisions() == {"f32"}


@pytest.fixture
def onnx_copy(exported, tmp_path):
    src = exported("onnx")
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(metadata_path(src), metadata_path(dst))
    return dst


def test_truncated_file_is_refused(onnx_copy):
    data = onnx_copy.read_bytes()
    onnx_copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportedModelError, match=r"Res2Net50_vd_26w_4s\.onnx.*SHA-256 differs"):
        load_exported(onnx_copy)


def test_corrupt_file_with_matching_checksum_is_refused(onnx_copy):
    onnx_copy.write_bytes(b"not an onnx graph" * 100)
    meta_file = metadata_path(onnx_copy)
    meta = json.loads(meta_file.read_text())
    meta["files"][onnx_copy.name] = hashlib.sha256(onnx_copy.read_bytes()).hexdigest()
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ExportedModelError, match="onnxruntime cannot load this onnx file"):
        load_exported(onnx_copy)


def test_missing_or_mismatched_metadata_is_refused(onnx_copy, exported):
    pt2_meta = metadata_path(exported("exported-program"))
    shutil.copy(pt2_meta, metadata_path(onnx_copy))
    with pytest.raises(ExportedModelError, match="describes a 'exported-program' export"):
        load_exported(onnx_copy)
    metadata_path(onnx_copy).write_text("{broken")
    with pytest.raises(ExportedModelError, match="not valid export metadata"):
        load_exported(onnx_copy)
    metadata_path(onnx_copy).unlink()
    with pytest.raises(ExportedModelError, match="metadata .*json is missing"):
        load_exported(onnx_copy)


def test_bad_export_requests(vd50_with_reference, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(vd50_with_reference[0], tmp_path / "m", fmt="tflite")
    with pytest.raises(
        ValueError, match="INT8 export needs format openvino .* onnx .* or executorch"
    ):
        export_model(
            vd50_with_reference[0],
            tmp_path / "m",
            fmt="torchscript",
            int8_calibration=vd50_with_reference[1],
        )
