"""Checks on an exported ``.onnx`` file before any runtime parses it for real.

A runtime trusts a graph: ONNX Runtime folds constant subgraphs when it creates the
session, so a 248-byte file holding ``ConstantOfShape([1, 3, 40000, 40000])`` allocated
6.9 GB in ``load_exported`` before a single image was given. So before a session is made,
:func:`check_onnx_graph` reads the graph (no tensor is computed) and refuses:

* operators that no Res2Net export holds, above all those that make a tensor larger than
  their inputs from a number alone (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``,
  ``Resize``, ``Pad``, random generators) and control flow (``If``, ``Loop``, ``Scan``);
* tensors stored outside the file (an export is one file);
* any tensor (initializer, constant, or intermediate value once shapes are inferred for
  one image of the card's input size) over :data:`res2net.limits.MAX_TENSOR_ELEMENTS`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from res2net import limits
from res2net.card import ExportedModelError

# What ``res2net export --format onnx`` writes (FP32: torch.onnx, opset 17; INT8: ONNX
# Runtime's QOperator quantization), and operators that never make a tensor larger than
# their inputs. Everything else is refused.
ALLOWED_OPS = frozenset(
    {
        "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
        "Conv", "DequantizeLinear", "Div", "DynamicQuantizeLinear", "Flatten", "Gather",
        "Gemm", "GlobalAveragePool", "Identity", "MatMul", "MatMulInteger", "MaxPool", "Mul",
        "QuantizeLinear", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
        "Softmax", "Split", "Squeeze", "Sub", "Transpose", "Unsqueeze",
    }
)  # fmt: skip
# ONNX Runtime's quantized operators (QLinearConv, QLinearAdd, QGemm, ...) keep shapes.
_QUANTIZED_PREFIXES = ("QLinear", "QGemm")


def check_onnx_graph(path: Path, side: int | None, engine: str = "onnxruntime") -> None:
    """Refuse an ONNX file whose graph could allocate without bound (see the module doc).

    :param side: the export's input side; shapes are inferred for one such image.
    :param engine: the runtime that would load it (named when the file does not parse).
    :raises ExportedModelError: naming the file, the operator or tensor, and the limit.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf fails in many ways on a bad file
        raise ExportedModelError(
            f"{path}: {engine} cannot load this onnx file (not a readable ONNX graph: "
            f"{str(exc)[:300]}); export it again"
        ) from None
    _check_operators(model.graph, path)
    for tensor in _stored_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ExportedModelError(
                f"{path}: tensor {tensor.name[:100]!r} is stored outside the file; a res2net "
                "export is one self-contained file"
            )
        _check_size(path, tensor.name, list(tensor.dims))
    for name, dims in _inferred_shapes(model, side, path):
        _check_size(path, name, dims)


def _check_operators(graph: Any, path: Path) -> None:
    for node in graph.node:
        op = node.op_type
        if op not in ALLOWED_OPS and not op.startswith(_QUANTIZED_PREFIXES):
            raise ExportedModelError(
                f"{path}: operator {op[:100]!r} (node {node.name[:100]!r}) is refused: no "
                "Res2Net export holds it, and a graph must not allocate beyond its input; "
                "export the model again with `res2net export`"
            )


def _stored_tensors(graph: Any) -> list[Any]:
    """Initializers and the tensors of Constant nodes (their ``value`` attribute)."""
    tensors = list(graph.initializer)
    for node in graph.node:
        tensors.extend(a.t for a in node.attribute if a.HasField("t"))
    return tensors


def _check_size(path: Path, name: str, dims: list[int]) -> None:
    if any(d < 0 for d in dims) or math.prod(dims) > limits.MAX_TENSOR_ELEMENTS:
        raise ExportedModelError(
            f"{path}: tensor {name[:100]!r} has shape {dims}, over the limit of "
            f"{limits.MAX_TENSOR_ELEMENTS:,} elements per image; not an export this package "
            "loads"
        )


def _inferred_shapes(model: Any, side: int | None, path: Path) -> list[tuple[str, list[int]]]:
    """Shapes of every value for one image (batch 1, ``side`` x ``side``), where ONNX's
    shape inference can tell them (without computing any tensor)."""
    import onnx

    graph_input = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [1, 3, side, side] if side else None
    for dim, value in zip(graph_input, fixed or [], strict=False):
        if not dim.dim_value or dim.dim_value == value:
            dim.dim_value = value
        else:
            raise ExportedModelError(
                f"{path}: input dimension {dim.dim_value} differs from its metadata's "
                f"{value} (crop {side}); the file and its metadata do not belong together"
            )
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference raises its own error per op
        raise ExportedModelError(f"{path}: inconsistent ONNX graph ({exc}); export again") from None
    values = list(inferred.graph.value_info) + list(inferred.graph.output)
    shapes = []
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes.append((value.name, [d.dim_value for d in dims]))
    return shapes
