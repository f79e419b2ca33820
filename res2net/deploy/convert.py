"""Every conversion of a PyTorch network into another engine's form, in one place.

Export (:mod:`res2net.deploy.export`) writes files with :func:`write_model`; the runtimes
(:mod:`res2net.deploy.runtimes`) convert in memory with :func:`export_onnx` and
:func:`convert_openvino`, and build their INT8 runtimes from a file written by
:func:`write_model` too, so an INT8 runtime in the bench is the INT8 file a user exports.
The input network is already rewritten (:func:`res2net.deploy.fuse.prepare_for_inference`)
and in eval mode.

* ONNX: ``torch.onnx.export`` (opset 17, dynamic batch); INT8 by ONNX Runtime's static
  quantizer (:func:`res2net.deploy.int8.quantize_onnx`).
* OpenVINO IR: ``openvino.convert_model`` of ``torch.export``'s graph; INT8 by NNCF
  (:func:`res2net.deploy.int8.quantize_openvino`); weights kept FP32 in the file.
* TorchScript (``torch.jit.trace``) and ``torch.export``'s ExportedProgram (``.pt2``).
* ExecuTorch ``.pte``: :func:`res2net.deploy.executorch.export_executorch` (XNNPACK; INT8
  by PT2E).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def batch_dynamic_program(model: nn.Module, side: int) -> torch.export.ExportedProgram:
    """``torch.export`` of an eval-mode model at side x side with a dynamic batch dimension."""
    example = torch.zeros(2, 3, side, side)
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=batch)


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: int = 224) -> Path:
    """Write ``model`` as a single-file ONNX graph (opset 17) with a dynamic batch dimension.

    Uses the TorchScript-based exporter: on this network it is about 5x faster than the
    dynamo exporter (5 s vs 24 s) and writes the same plain Conv/Relu/Pool graph.
    """
    path = Path(path)
    example = torch.zeros(2, 3, input_size, input_size)
    batch = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter's notice that it is the legacy one (a FutureWarning up to torch 2.8,
        # a DeprecationWarning since): chosen on purpose, see above.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX")
        # torch 2.14's own exporter calls its deprecated setup_onnx_logging.
        warnings.filterwarnings("ignore", "The feature will be removed. Please remove usage")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": batch, "output": batch},
        )
    return path


def export_onnx_int8(
    model: nn.Module, path: str | os.PathLike, calibration: np.ndarray, input_size: int = 224
) -> Path:
    """Write ``model`` as an INT8 ONNX graph: FP32 export, then ONNX Runtime's quantizer."""
    from res2net.deploy.int8 import quantize_onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", input_size)
        return quantize_onnx(fp32, path, calibration)


def convert_openvino(model: nn.Module, input_size: int = 224) -> Any:
    """An ``openvino.Model`` of an eval-mode network at a fixed H = W and a dynamic batch.

    Converted from ``torch.export``'s graph, which OpenVINO reads faster than tracing.
    """
    import openvino as ov

    return ov.convert_model(batch_dynamic_program(model, input_size))


def _write_onnx(module: nn.Module, path: Path, side: int, calib: np.ndarray | None) -> None:
    if calib is None:
        export_onnx(module, path, side)
    else:
        export_onnx_int8(module, path, calib, side)


def _write_openvino(module: nn.Module, path: Path, side: int, calib: np.ndarray | None) -> None:
    import openvino as ov

    ov_model = convert_openvino(module, input_size=side)
    if calib is not None:
        from res2net.deploy.int8 import quantize_openvino

        ov_model = quantize_openvino(ov_model, calib)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)


def _write_torchscript(module: nn.Module, path: Path, side: int, calib: None) -> None:
    # TorchScript is deprecated in PyTorch but still what many C++ deployments load.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(module, torch.zeros(2, 3, side, side)), str(path))


def _write_program(module: nn.Module, path: Path, side: int, calib: None) -> None:
    torch.export.save(batch_dynamic_program(module, side), path)


def _write_executorch(module: nn.Module, path: Path, side: int, calib: np.ndarray | None) -> None:
    from res2net.deploy.executorch import export_executorch

    export_executorch(module, path, side, calib)


# Format -> its writer (module, path, side, INT8 calibration or None).
WRITERS: dict[str, Callable[[nn.Module, Path, int, Any], None]] = {
    "onnx": _write_onnx,
    "openvino": _write_openvino,
    "torchscript": _write_torchscript,
    "exported-program": _write_program,
    "executorch": _write_executorch,
}


def write_model(
    module: nn.Module,
    fmt: str,
    path: str | os.PathLike,
    side: int,
    calibration: np.ndarray | None = None,
) -> Path:
    """Write a rewritten eval-mode network as ``fmt`` at ``path`` (INT8 with ``calibration``,
    for the formats :data:`res2net.deploy.engines.INT8_QUANTIZER` names)."""
    WRITERS[fmt](module, Path(path), side, calibration)
    return Path(path)


def load_torch_file(path: str | os.PathLike, fmt: str, device: str = "cpu") -> nn.Module:
    """The module of a ``torchscript`` (``.pt``) or ``exported-program`` (``.pt2``) file."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location=device)
    return torch.export.load(path).module()
