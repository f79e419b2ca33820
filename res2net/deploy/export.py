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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from res2net import limits
from res2net.card import (
    ExportedModelError,
    ModelCard,
    card_from_export_metadata,
    files_of,
    metadata_path,
    read_export_metadata,
    sha256_of,
)
from res2net.data.preprocess import Preprocess
from res2net.deploy.convert import export_onnx, export_onnx_int8, write_model
from res2net.deploy.engines import DEFAULT_ENGINE, FORMATS, INT8_QUANTIZER
from res2net.deploy.executorch import export_metadata
from res2net.deploy.fuse import prepare_for_inference
from res2net.deploy.graph_check import check_onnx_graph, check_openvino_ir
from res2net.deploy.runtimes import Runtime, open_file, openvino_runs_bf16
from res2net.models.config import Res2NetConfig

# Re-exported: the public names of the formats and the ONNX writers stay importable here.
__all__ = [
    "DEFAULT_ENGINE",
    "FORMATS",
    "INT8_QUANTIZER",
    "ExportedModelError",
    "export_model",
    "export_onnx",
    "export_onnx_int8",
    "load_exported",
    "metadata_path",
    "read_metadata",
]
METADATA_VERSION = 1


class _WithSoftmax(nn.Module):
    """Classifier followed by softmax, as PaddleClas's export appends by default."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


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
    random_weights: bool = False,
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
    :param random_weights: the model was never trained or loaded (``res2net export
        --random-weights``): recorded in the metadata, so predict and serve warn whoever runs it.
    :raises ValueError: unknown format, INT8 asked for a format without a quantizer,
        bf16 for a format other than openvino or together with INT8, or a label count that
        differs from the model's outputs.
    """
    _check_export(fmt, precision, int8_calibration)
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
    write_model(module, fmt, path, side, int8_calibration)
    card = ModelCard(
        name,
        config if isinstance(config := getattr(model, "config", None), Res2NetConfig) else None,
        num_classes,
        preprocess,
        tuple(labels) if labels is not None else None,
        precision="int8" if int8_calibration is not None else precision,
    )
    meta = export_metadata_of(card, fmt, path, side, softmax)
    if random_weights:  # said in the file, so that whoever runs it is warned too
        meta["random_weights"] = True
    metadata_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _check_export(fmt: str, precision: str, int8_calibration: np.ndarray | None) -> None:
    """The argument errors of :func:`export_model`, named by argument."""
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
        named = [f"{f} ({q})" for f, q in sorted(INT8_QUANTIZER.items(), key=lambda i: i[1])]
        raise ValueError(
            f"INT8 export needs format {', '.join(named[:-1])} or {named[-1]}, not {fmt}"
        )


def _num_outputs(module: nn.Module, side: int) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, 3, side, side)).shape[1])


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


def _input_side(meta: dict[str, Any], card: ModelCard, path: Path) -> int:
    """The image side an export takes: its metadata's ``input.shape`` (the export's
    ``input_size``), else the card's crop; bounded like a crop."""
    described = meta.get("input")
    shape = described.get("shape") if isinstance(described, dict) else None
    if shape is None:
        return card.preprocess.crop
    if not (
        isinstance(shape, list)
        and len(shape) == 4
        and type(shape[-1]) is int
        and 1 <= shape[-1] <= limits.MAX_CROP
    ):
        raise ExportedModelError(
            f"{metadata_path(path).name}.input.shape = {str(shape)[:100]}: must be "
            f"[N, 3, S, S] with S from 1 to {limits.MAX_CROP}; export the model again"
        )
    return shape[-1]


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
    # Every value of the card is range-checked before anything is allocated from it.
    card = card_from_export_metadata(meta, where=metadata_path(path).name)
    fmt = meta["format"]
    engine = engine or DEFAULT_ENGINE[fmt]
    precision = _run_precision(meta, engine, path)
    if fmt == "onnx":
        check_onnx_graph(path, _input_side(meta, card, path), engine)
    elif fmt == "openvino":
        check_openvino_ir(path, _input_side(meta, card, path))
    try:
        runtime = open_file(path, fmt, engine, device, precision)
    except ValueError:
        raise
    except Exception as exc:  # each runtime raises its own types for unparsable files
        raise ExportedModelError(
            f"{path}: {engine} cannot load this {fmt} file ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:300]}); export it again"
        ) from exc
    runtime.metadata = meta
    return runtime
