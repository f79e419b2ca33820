"""INT8 post-training quantization keeps a really trained model's accuracy.

A small Res2Net-50-vd is trained on scikit-learn's handwritten digits with the project's own
training loop (the recipe of configs/digits_demo.yaml as shipped), quantized with NNCF from training
images only, and both precisions are scored on the held-out digits.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import top1

from res2net.deploy.export import export_model, load_exported
from res2net.deploy.int8 import load_calibration
from res2net.deploy.runtimes import create_runtime


@pytest.mark.slow
def test_int8_top1_within_half_point_of_fp32(digits_demo, tmp_path):
    model, pre = digits_demo["model"], digits_demo["preprocess"]
    images, labels = digits_demo["images"], digits_demo["labels"]
    fp32 = top1(create_runtime(model, "eager"), images, labels)
    assert fp32 >= 0.9, f"the demo model did not train (top-1 {fp32:.3f})"

    calib = load_calibration([digits_demo["train_dir"]], pre, limit=300)
    for fmt, quantizer in (("openvino", "nncf"), ("onnx", "onnxruntime")):
        path = export_model(
            model, tmp_path / f"digits_int8_{fmt}", fmt=fmt, preprocess=pre, int8_calibration=calib
        )
        runtime = load_exported(path)
        assert runtime.metadata["precision"] == "int8"
        assert runtime.metadata["quantizer"] == quantizer
        if fmt == "onnx":  # really integer kernels, not a float graph with a new label
            import onnx

            ops = {node.op_type for node in onnx.load(str(path)).graph.node}
            assert "QLinearConv" in ops and "Conv" not in ops, ops
        int8 = top1(runtime, images, labels)
        assert abs(int8 - fp32) <= 0.005, f"{fmt}: FP32 top-1 {fp32:.4f}, INT8 {int8:.4f}"


def test_vnni_detection_reads_the_flags_line(tmp_path):
    from res2net.deploy.int8 import cpu_has_vnni

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_vnni(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(info)
    info.write_text("flags\t\t: avx2 avx_vnni\n")
    assert cpu_has_vnni(info)
    assert not cpu_has_vnni(tmp_path / "missing")


def test_onnx_calibration_of_the_wrong_shape_is_named(tmp_path):
    """Calibration images preprocessed for another input size are refused up front, naming
    the model file and both shapes, instead of failing inside ONNX Runtime's calibrator."""
    from res2net.deploy.export import export_onnx
    from res2net.deploy.int8 import quantize_onnx
    from res2net.models.res2net import Res2Net, Res2NetConfig

    model = Res2Net(Res2NetConfig(depth=50, width=4, scales=4), num_classes=10)
    source = export_onnx(model, tmp_path / "tiny.onnx", input_size=32)
    wrong = np.zeros((2, 3, 224, 224), dtype=np.float32)
    with pytest.raises(ValueError, match=r"2 x 3 x 224 x 224 does not fit the input 'input'.*"
                       r"tiny\.onnx \(N x 3 x 32 x 32\)"):  # fmt: skip
        quantize_onnx(source, tmp_path / "int8.onnx", wrong)
    assert not (tmp_path / "int8.onnx").exists()
    out = quantize_onnx(source, tmp_path / "int8.onnx", np.zeros((2, 3, 32, 32), np.float32))
    assert out.stat().st_size > 0
