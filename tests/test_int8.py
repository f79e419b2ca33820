"""INT8 post-training quantization keeps a really trained model's accuracy.

A small Res2Net-50-vd is trained on scikit-learn's handwritten digits with the project's own
training loop (the recipe of configs/digits_demo.yaml as shipped), quantized with NNCF from training
images only, and both precisions are scored on the held-out digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from res2net.data.datasets import folder_samples, render_digits
from res2net.data.transforms import preprocess
from res2net.deploy.export import export_model, load_exported
from res2net.deploy.int8 import load_calibration
from res2net.deploy.runtimes import create_runtime
from res2net.engine.config import load_config
from res2net.engine.evaluate import model_from_weights
from res2net.engine.train import train
from res2net.models.registry import Preprocess

ROOT = Path(__file__).resolve().parents[1]


def _top1(runtime, images: np.ndarray, labels: np.ndarray) -> float:
    logits = np.concatenate([runtime(images[i : i + 64]) for i in range(0, len(images), 64)])
    return float((logits.argmax(1) == labels).mean())


@pytest.mark.slow
def test_int8_top1_within_half_point_of_fp32(tmp_path):
    data = tmp_path / "digits"
    render_digits(data)
    cfg = load_config(
        ROOT / "configs" / "digits_demo.yaml",
        [
            f"data.train_dir={data / 'train'}",
            f"data.val_dir={data / 'val'}",
            f"output.dir={tmp_path / 'run'}",
            "train.device=cpu",
        ],
    )
    model, meta = model_from_weights(train(cfg).final_weights)
    pre = Preprocess(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["preprocess"].items()}
    )

    samples, _ = folder_samples(data / "val")
    images = np.stack([preprocess(path, pre).numpy() for path, _ in samples])
    labels = np.array([label for _, label in samples])
    fp32 = _top1(create_runtime(model, "eager"), images, labels)
    assert fp32 >= 0.9, f"the demo model did not train (top-1 {fp32:.3f})"

    calib = load_calibration([data / "train"], pre, limit=300)
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
        int8 = _top1(runtime, images, labels)
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


def test_onnx_int8_weights_use_all_8_bits_only_with_vnni(tmp_path):
    """ONNX Runtime's ``reduce_range`` follows the CPU: full-range int8 weights where VNNI
    (or AMX-INT8) sums u8 x s8 products exactly, 7-bit ones where ``vpmaddubsw`` would
    saturate. Read from the quantized file's own weight tensors."""
    import onnx
    from onnx import numpy_helper

    from res2net.deploy.export import export_onnx
    from res2net.deploy.int8 import cpu_has_vnni, quantize_onnx
    from res2net.models.res2net import Res2Net, Res2NetConfig

    model = Res2Net(Res2NetConfig(depth=50, width=4, scales=4), num_classes=10).eval()
    source = export_onnx(model, tmp_path / "tiny.onnx", input_size=32)
    calib = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    graph = onnx.load(str(quantize_onnx(source, tmp_path / "int8.onnx", calib))).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == 3]  # int8
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert peak > 100 if cpu_has_vnni() else peak <= 64, peak
