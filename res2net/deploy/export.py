"""Export a Res2Net for deployment, and load exported files back into a runtime.

Formats: ``onnx`` (``.onnx``), ``openvino`` (``.xml`` + ``.bin``), ``torchscript`` (``.pt``),
``exported-program`` (``.pt2``, ``torch.export``), ``executorch`` (``.pte``, XNNPACK, for
phones and boards: :mod:`res2net.deploy.executorch`). Every export but ``.pte`` (one image
per call) has a dynamic batch dimension; every export has BatchNorm folded into the
convolutions (:mod:`res2net.deploy.fuse`), and a metadata file beside it (same stem,
``.json``) holding the model card (:mod:`res2net.card`: name, architecture, preprocessing,
class labels, precision) and the SHA-256 of the model file, so a runtime needs nothing else
and a changed or mixed-up file is detected on load.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from res2net.card import (
    ExportedModelError,
    ModelCard,
    files_of,
    metadata_path,
    read_export_metadata,
    sha256_of,
)
from res2net.data.preprocess import Preprocess
from res2net.deploy.executorch import (
    QUANTIZER,
    ExecuTorchRuntime,
    export_executorch,
    export_metadata,
)
from res2net.deploy.formats import FORMATS
from res2net.deploy.runtimes import (
    EagerRuntime,
    OnnxRuntime,
    OpenVinoRuntime,
    Runtime,
    batch_dynamic_program,
    convert_openvino,
    openvino_runs_bf16,
    prepare_for_inference,
)
from res2net.models.config import Res2NetConfig

# The engine that runs each format by default; ONNX also runs in OpenVINO.
DEFAULT_ENGINE = {
    "onnx": "onnxruntime",
    "openvino": "openvino",
    "torchscript": "eager",
    "exported-program": "eager",
    "executorch": "executorch",
}
# The toolkit that quantizes each format that can be exported in INT8.
INT8_QUANTIZER = {"openvino": "nncf", "onnx": "onnxruntime", "executorch": QUANTIZER}
METADATA_VERSION = 1


class _WithSoftmax(nn.Module):
    """Classifier followed by softmax, as PaddleClas's export appends by default."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: int = 224) -> Path:
    """Write ``model`` as a single-file ONNX graph (opset 17) with a dynamic batch dimension.

    Uses the TorchScript-based exporter: on this network it is about 5x faster than the
    dynamo exporter (5 s vs 24 s) and writes the same plain Conv/Relu/Pool graph.
    """
    path = Path(path)
    example = torch.zeros(2, 3, input_size, input_size)
    batch = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
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


def _export_file(module: nn.Module, fmt: str, path: Path, input_size: int) -> None:
    example = torch.zeros(2, 3, input_size, input_size)
    if fmt == "onnx":
        export_onnx(module, path, input_size)
    elif fmt == "torchscript":
        # TorchScript is deprecated in PyTorch but still what many C++ deployments load.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.trace(module, example), str(path))
    elif fmt == "exported-program":
        torch.export.save(batch_dynamic_program(module, input_size), path)
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")


def export_model(
    model: nn.Module,
    output: str | os.PathLike,
    *,
    fmt: str = "onnx",
    name: str = "",
    preprocess: Any = None,
    labels: Sequence[str] | None = None,
    softmax: bool = False,
    int8_calibration: np.ndarray | None = None,
    input_size: int | None = None,
    precision: str = "fp32",
) -> Path:
    """Export a weights-loaded model plus its metadata JSON; returns the model file's path.

    :param model: the model (a :class:`~res2net.models.res2net.Res2Net` gets the rewrites).
    :param output: the model file; its suffix is set to the format's (``.onnx``...).
    :param fmt: one of :data:`FORMATS`.
    :param name: the registered model name, written to the metadata.
    :param preprocess: the model card's ``Preprocess`` (or its dict), for the metadata;
        default PaddleClas's.
    :param labels: class names, index = class id.
    :param softmax: append a softmax (outputs probabilities instead of logits).
    :param int8_calibration: N x 3 x H x W preprocessed images; quantizes to INT8, with
        NNCF for ``openvino``, ONNX Runtime's quantizer for ``onnx`` and PT2E with
        XNNPACK's quantizer for ``executorch`` (those three only).
    :param input_size: crop side the graph is traced with (default: the preprocessing's).
    :param precision: ``"fp32"``, or ``"bf16"`` for ``openvino``: the IR keeps FP32 weights
        and its metadata records ``bf16``, so :func:`load_exported` compiles it with
        OpenVINO's BF16 hint (CPUs with AVX512-BF16 or AMX-BF16).
    :raises ValueError: unknown format, INT8 asked for a format without a quantizer,
        bf16 for a format other than openvino or together with INT8, or a label count that
        differs from the model's outputs.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"export precision={precision!r}: choose fp32 or bf16")
    if precision == "bf16" and (fmt != "openvino" or int8_calibration is not None):
        raise ValueError(
            f"precision='bf16' is recorded for fmt='openvino' FP32 exports only, not {fmt}"
            + (" with INT8" if int8_calibration is not None else "")
        )
    if int8_calibration is not None and fmt not in INT8_QUANTIZER:
        raise ValueError(
            f"INT8 export needs format openvino (NNCF), onnx (ONNX Runtime) or executorch "
            f"(PT2E), not {fmt}"
        )
    if not isinstance(preprocess, Preprocess):
        preprocess = Preprocess.from_dict(preprocess) if preprocess is not None else Preprocess()
    side = input_size or preprocess.crop
    path = Path(output).with_suffix(FORMATS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared = prepare_for_inference(model, channels_last=fmt in ("torchscript",))
    module = _WithSoftmax(prepared) if softmax else prepared
    num_classes = _num_outputs(module, side)
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels given for a model with {num_classes} outputs")
    if fmt == "openvino":
        _export_openvino(module, path, side, int8_calibration)
    elif fmt == "onnx" and int8_calibration is not None:
        export_onnx_int8(module, path, int8_calibration, side)
    elif fmt == "executorch":
        export_executorch(module, path, side, int8_calibration)
    else:
        _export_file(module, fmt, path, side)
    card = ModelCard(
        name,
        config if isinstance(config := getattr(model, "config", None), Res2NetConfig) else None,
        num_classes,
        preprocess,
        tuple(labels) if labels is not None else None,
        precision="int8" if int8_calibration is not None else precision,
    )
    meta = export_metadata_of(card, fmt, path, side, softmax)
    metadata_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _num_outputs(module: nn.Module, side: int) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, 3, side, side)).shape[1])


def _export_openvino(module: nn.Module, path: Path, side: int, calib: np.ndarray | None) -> None:
    import openvino as ov

    ov_model = convert_openvino(module, input_size=side)
    if calib is not None:
        from res2net.deploy.int8 import quantize_openvino

        ov_model = quantize_openvino(ov_model, calib)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)


def export_metadata_of(
    card: ModelCard, fmt: str, path: Path, side: int, softmax: bool
) -> dict[str, Any]:
    """The JSON written beside an export: its card (:meth:`ModelCard.to_dict`) plus what
    the file itself is (format, input, output, quantizer, the SHA-256 of each file)."""
    meta = {
        "metadata_version": METADATA_VERSION,
        "format": fmt,
        **card.to_dict(),
        "quantizer": INT8_QUANTIZER[fmt] if card.precision == "int8" else None,
        "output": "probabilities" if softmax else "logits",
        "input": {"shape": [-1, 3, side, side], "layout": "NCHW"},
        "files": {p.name: sha256_of(p) for p in files_of(path)},
    }
    if fmt == "executorch":
        meta.update(export_metadata(side))
    return meta


def read_metadata(model_path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported model, checked against the model file(s); its card is
    :func:`res2net.card.load_card` of the model file.

    :raises ExportedModelError: metadata missing or unreadable, or a model file that is
        missing or differs from the one exported with this metadata.
    """
    return read_export_metadata(model_path)


def _open(path: Path, fmt: str, engine: str, device: str, precision: str) -> Runtime:
    if engine == "onnxruntime" and fmt == "onnx":
        return OnnxRuntime(path, device)
    if engine == "openvino" and fmt in ("onnx", "openvino"):
        # Always an explicit precision: OpenVINO's own default is BF16 on CPUs that have it.
        return OpenVinoRuntime(path, device, precision=precision)
    if engine == "eager" and fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return EagerRuntime(torch.jit.load(str(path), map_location=device), device)
    if engine == "eager" and fmt == "exported-program":
        # An exported program is already in inference form and refuses .eval().
        return EagerRuntime(torch.export.load(path).module(), device, set_eval=False)
    if engine == "executorch" and fmt == "executorch":
        return ExecuTorchRuntime(path, device)
    raise ValueError(f"a {fmt} export cannot run in engine {engine!r}; use {DEFAULT_ENGINE[fmt]}")


def _run_precision(meta: dict[str, Any], engine: str, path: Path) -> str:
    """The precision an export runs at: the one its metadata records (``bf16`` only in
    OpenVINO, and only on a CPU with native BF16)."""
    precision = meta.get("precision") or "fp32"
    if precision == "bf16" and engine != "openvino":
        raise ValueError(f"{path}: a bf16 export runs in engine 'openvino', not {engine!r}")
    if precision == "bf16" and not openvino_runs_bf16():
        raise ValueError(
            f"{path}: exported for bf16, which OpenVINO runs only on CPUs with AVX512-BF16 or "
            "AMX-BF16 (this one has neither); export it again without --precision bf16"
        )
    return precision


def load_exported(
    model_path: str | os.PathLike, engine: str | None = None, *, device: str = "cpu"
) -> Runtime:
    """Load an exported model into a runtime; ``runtime.metadata`` holds its metadata.

    It runs at the precision the metadata records (``fp32``, ``bf16`` or ``int8``); an
    OpenVINO engine is always compiled with that precision stated, never OpenVINO's default.

    :param engine: default: the format's own (:data:`DEFAULT_ENGINE`); an ONNX file also
        runs in ``openvino``.
    :raises ExportedModelError: missing/corrupt/mismatched files (see :func:`read_metadata`),
        or a file its runtime cannot parse.
    :raises ValueError: a bf16 export on a CPU without native BF16, or outside OpenVINO.
    """
    path = Path(model_path)
    meta = read_metadata(path)
    fmt = meta["format"]
    engine = engine or DEFAULT_ENGINE[fmt]
    precision = _run_precision(meta, engine, path)
    try:
        runtime = _open(path, fmt, engine, device, precision)
    except ValueError:
        raise
    except Exception as exc:  # each runtime raises its own types for unparsable files
        raise ExportedModelError(
            f"{path}: {engine} cannot load this {fmt} file ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:300]}); export it again"
        ) from exc
    runtime.metadata = meta
    return runtime
