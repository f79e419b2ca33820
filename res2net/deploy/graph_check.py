"""Checks on an exported ``.onnx`` or OpenVINO ``.xml`` file before any runtime compiles it.

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

OpenVINO folds constants when it compiles a model, the same hazard: a 4 KB IR holding
``Broadcast(1.0, [1, 1, 12000, 12000])`` took 570 MB in ``compile_model``. So
:func:`check_openvino_ir` reads the ``.xml`` itself first (size-capped, no DTD), refuses
layer types no Res2Net IR holds and any ``Const`` whose bytes are not inside the ``.bin`` or
do not match its element type and shape, and only then lets OpenVINO read the model (no
compile) to infer every output's shape for one image, refusing dynamic or oversized ones.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
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


# Layer types of what ``res2net export --format openvino`` writes (FP32 and NNCF's INT8),
# plus operators that never make a tensor larger than their inputs. No Broadcast, Tile,
# Range, Pad, Interpolate, random generators or control flow (Loop, If, TensorIterator).
ALLOWED_IR_LAYERS = frozenset(
    {
        "Add", "AvgPool", "BatchNormInference", "Clamp", "Concat", "Const", "Convert",
        "Convolution", "Divide", "FakeQuantize", "Gather", "GroupConvolution", "MatMul",
        "MaxPool", "Multiply", "Parameter", "ReLU", "ReduceMean", "Reshape", "Result",
        "ShapeOf", "Sigmoid", "Slice", "SoftMax", "Softmax", "Split", "Squeeze",
        "StridedSlice", "Subtract", "Transpose", "Unsqueeze", "VariadicSplit",
    }
)  # fmt: skip
# Bits per element of each IR element type a Const may hold (OpenVINO's element types).
_IR_ELEMENT_BITS = {
    "boolean": 8, "bf16": 16, "f16": 16, "f32": 32, "f64": 64, "f8e4m3": 8, "f8e5m2": 8,
    "i4": 4, "i8": 8, "i16": 16, "i32": 32, "i64": 64,
    "u1": 1, "u4": 4, "u8": 8, "u16": 16, "u32": 32, "u64": 64,
}  # fmt: skip


def check_openvino_ir(path: Path, side: int | None) -> None:
    """Refuse an OpenVINO IR whose graph could allocate without bound (see the module doc).

    :param path: the ``.xml``; its weights are the ``.bin`` beside it.
    :param side: the export's input side; shapes are inferred for one such image.
    :raises ExportedModelError: naming the file, the layer, and the limit or what to do.
    """
    layers = _read_ir_layers(path)
    weights = path.with_suffix(".bin")
    bin_size = weights.stat().st_size if weights.is_file() else 0
    for layer in layers:
        kind = layer.get("type", "")
        if kind not in ALLOWED_IR_LAYERS:
            raise ExportedModelError(
                f"{path}: layer type {kind[:100]!r} (layer {layer.get('name', '')[:100]!r}) is "
                "refused: no Res2Net IR holds it, and a graph must not allocate beyond its "
                "input; export the model again with `res2net export --format openvino`"
            )
        if kind == "Const":
            _check_ir_const(path, layer, bin_size)
    _check_ir_shapes(path, side)


def _read_ir_layers(path: Path) -> list[Any]:
    """The ``<layer>`` elements of an IR, read with a size cap and no DTD (so no entity can
    expand: OpenVINO's IR never has one)."""
    size = path.stat().st_size
    if size > limits.MAX_IR_XML_BYTES:
        raise ExportedModelError(
            f"{path}: {size:,} bytes, over the limit of {limits.MAX_IR_XML_BYTES:,} for an "
            "OpenVINO .xml; not an export this package loads"
        )
    text = path.read_bytes()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise ExportedModelError(f"{path}: an OpenVINO IR holds no DTD; export it again")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ExportedModelError(
            f"{path}: not a readable OpenVINO IR ({exc}); export it again"
        ) from None
    layers = root.findall("./layers/layer")
    if not layers or len(layers) > limits.MAX_IR_LAYERS:
        raise ExportedModelError(
            f"{path}: {len(layers):,} layers; an OpenVINO IR this package loads has from 1 to "
            f"{limits.MAX_IR_LAYERS:,}; export the model again"
        )
    return layers


def _check_ir_const(path: Path, layer: Any, bin_size: int) -> None:
    """A Const's bytes lie inside the ``.bin`` and are exactly its element type x shape."""
    data = layer.find("data")
    where = f"{path}: Const layer {layer.get('name', '')[:100]!r}"
    attrs = {} if data is None else data.attrib
    try:
        offset, size = int(attrs["offset"]), int(attrs["size"])
        dims = [int(d) for d in attrs["shape"].split(",") if d.strip()]
        bits = _IR_ELEMENT_BITS[attrs["element_type"]]
    except (KeyError, ValueError):
        raise ExportedModelError(
            f"{where}: needs element_type (one of {', '.join(_IR_ELEMENT_BITS)}), a static "
            "shape, offset and size; export the model again"
        ) from None
    _check_size(path, layer.get("name", ""), dims)
    if offset < 0 or size < 0 or offset + size > bin_size:
        raise ExportedModelError(
            f"{where}: bytes {offset:,} to {offset + size:,} are not inside its .bin "
            f"({bin_size:,} bytes); the .xml and .bin do not belong together, export again"
        )
    if size != (math.prod(dims) * bits + 7) // 8:
        raise ExportedModelError(
            f"{where}: {size:,} bytes, but {attrs['element_type']} x shape {dims} needs "
            f"{(math.prod(dims) * bits + 7) // 8:,}; export the model again"
        )


def _check_ir_shapes(path: Path, side: int | None) -> None:
    """OpenVINO reads the model (no compile, weights mapped, nothing folded) and infers every
    output's shape for one ``side`` x ``side`` image; each must be static and bounded."""
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
        (parameter,) = model.get_parameters()
        if side:
            _fix_ir_input(path, model, parameter, side)
    except ExportedModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own types on a bad IR
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportedModelError(
            f"{path}: openvino cannot read this IR as one input of [N, 3, {side}, {side}] "
            f"({first}); export it again"
        ) from None
    for op in model.get_ordered_ops():
        for output in op.outputs():
            shape = output.get_partial_shape()
            if shape.is_dynamic:
                raise ExportedModelError(
                    f"{path}: layer {op.get_friendly_name()[:100]!r} has the dynamic shape "
                    f"{shape} for one image; an export's shapes follow from its input alone"
                )
            _check_size(path, op.get_friendly_name(), list(shape.to_shape()))


def _fix_ir_input(path: Path, model: Any, parameter: Any, side: int) -> None:
    """Reshape the model to one image of the card's side, after checking the IR's own input
    agrees with it (its batch may be dynamic)."""
    import openvino as ov

    declared = parameter.get_partial_shape()
    wanted = [3, side, side]
    if (
        declared.rank.is_dynamic
        or len(declared) != 4
        or any(
            d.is_static and d.get_length() != w
            for d, w in zip(list(declared)[1:], wanted, strict=True)
        )
    ):
        raise ExportedModelError(
            f"{path}: input shape {declared} differs from its metadata's [N, 3, {side}, {side}]"
            f"; the file and its metadata do not belong together"
        )
    model.reshape({parameter.output(0): ov.PartialShape([1, *wanted])})
