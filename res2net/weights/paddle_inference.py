"""PaddleClas inference models, read without Paddle: the parameters of an exported program.

``tools/export_model.py`` (``paddle.jit.save``) writes a program and its parameters:
``inference.pdmodel`` (Paddle 2.x: a ``ProgramDesc`` protobuf) or ``inference.json``
(Paddle 3: the PIR program as JSON), beside ``inference.pdiparams``. The parameters file is
a bare concatenation of tensors without their names: ``save_combine`` writes the program's
persistable variables sorted by name (``paddle/static/io.py`` and ``paddle/static/pir_io.py``
iterate ``sorted(save_var_map)``), so the names come from the program, sorted the same way.

Each tensor is laid out as ``paddle/phi/core/framework/lod_tensor_serialize.cc`` and
``dense_tensor_serialize.cc`` write it (all little-endian): uint32 version (0), uint64 LoD
level count and per level a uint64 byte size plus its offsets, uint32 tensor version (0),
int32 size of a ``VarType.TensorDesc`` protobuf (``framework.proto``: field 1 data type,
field 2 repeated int64 dims), that protobuf, then the raw data in C order.

Everything is read as data: sizes are checked against the bytes present before anything is
allocated, the protobuf reader follows only the few fields it needs, and a file that does not
match its program is refused with what differs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from res2net.weights.errors import WeightFileError

PARAMS_SUFFIX = ".pdiparams"
PROGRAM_SUFFIXES = (".json", ".pdmodel")
# What PaddleClas's export names its files: `Global.save_inference_dir`/inference.*.
DEFAULT_STEM = "inference"
# A Res2Net program is a few hundred KiB; a program file past this is not one.
MAX_PROGRAM_BYTES = 64 << 20
_MAX_NDIM = 32
_MAX_LOD_LEVELS = 8
_MAX_DESC_BYTES = 1 << 12

# framework.proto VarType.Type values of the tensor element types, and of a dense tensor.
_PROTO_DTYPES = {
    0: np.dtype("?"), 1: np.dtype("<i2"), 2: np.dtype("<i4"), 3: np.dtype("<i8"),
    4: np.dtype("<f2"), 5: np.dtype("<f4"), 6: np.dtype("<f8"), 20: np.dtype("u1"),
    21: np.dtype("i1"),
}  # fmt: skip
_PROTO_DENSE_TENSOR = 7
# PIR's type names (paddle/pir/include/core/builtin_type.h: t_f32 ...) -> the same dtypes.
_PIR_DTYPES = {
    "0.t_bool": 0, "0.t_i16": 1, "0.t_i32": 2, "0.t_i64": 3, "0.t_f16": 4, "0.t_f32": 5,
    "0.t_f64": 6, "0.t_ui8": 20, "0.t_i8": 21,
}  # fmt: skip
# PIR's short op name of builtin.parameter (paddle/fluid/pir/serialize_deserialize).
_PIR_PARAMETER_OP = "p"


@dataclass(frozen=True)
class InferenceModel:
    """An inference model's two files."""

    program: Path
    params: Path


@dataclass(frozen=True)
class _Variable:
    """A persistable variable of the program: what the parameters file must hold for it."""

    name: str
    dtype: int
    shape: tuple[int, ...]


def find_inference_model(path: str | Path) -> InferenceModel | None:
    """The inference model ``path`` names, or None when it names none.

    ``path`` may be a directory holding ``inference.pdiparams``, the ``.pdiparams`` file, or
    the program (``.pdmodel``, or a ``.json`` with a ``.pdiparams`` beside it).

    :raises WeightFileError: the parameters file without a program, or with two of them.
    """
    path = Path(path)
    if path.is_dir():
        params = path / (DEFAULT_STEM + PARAMS_SUFFIX)
        return _pair_of(params) if params.is_file() else None
    suffix = path.suffix.lower()
    if suffix == PARAMS_SUFFIX and path.is_file():
        return _pair_of(path)
    params = path.with_suffix(PARAMS_SUFFIX)
    if suffix in PROGRAM_SUFFIXES and path.is_file() and params.is_file():
        return InferenceModel(path, params)
    if suffix == ".pdmodel" and path.is_file():
        raise WeightFileError(
            f"{path}: the program's parameters {params.name} are missing; an inference model "
            "is the .pdmodel (or .json) and the .pdiparams written beside it"
        )
    return None


def _pair_of(params: Path) -> InferenceModel:
    programs = [params.with_suffix(s) for s in PROGRAM_SUFFIXES if params.with_suffix(s).is_file()]
    if not programs:
        raise WeightFileError(
            f"{params}: no program beside it ({params.stem}.json or {params.stem}.pdmodel); "
            "the parameters file holds no names, which come from the program"
        )
    if len(programs) > 1:
        raise WeightFileError(
            f"{params.parent}: holds both {programs[0].name} and {programs[1].name}; name the "
            "one that belongs to the parameters (the other is left from another export)"
        )
    return InferenceModel(programs[0], params)


def read_inference_model(model: InferenceModel) -> dict[str, np.ndarray]:
    """The parameters of an inference model, by the names its program gives them.

    :returns: parameter name (PaddleClas's, e.g. ``res2a_branch2a_weights``) -> array.
    :raises WeightFileError: unreadable, truncated or crafted files, or a parameters file
        that does not hold exactly the program's variables (names, types and shapes).
    """
    data = _read_bounded(model.program, MAX_PROGRAM_BYTES)
    if model.program.suffix.lower() == ".json":
        variables = _pir_variables(data, model.program)
    else:
        variables = _pdmodel_variables(data, model.program)
    if not variables:
        raise WeightFileError(f"{model.program}: the program has no parameters")
    try:
        buffer = bytearray(model.params.read_bytes())
    except OSError as exc:
        raise WeightFileError(f"{model.params}: cannot read ({exc.strerror or exc})") from None
    return _read_tensors(buffer, sorted(variables, key=lambda v: v.name), model.params)


def _read_bounded(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise WeightFileError(
                f"{path}: {size:,} bytes, more than the {limit:,} a program file may have"
            )
        return path.read_bytes()
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


# -- the Paddle 3 program: PIR JSON ------------------------------------------------------------


def _pir_variables(data: bytes, path: Path) -> list[_Variable]:
    """The ``builtin.parameter`` ops of the program's top block: name, type and shape."""
    try:
        doc = json.loads(data)
        if doc["base_code"]["magic"] != "pir":
            raise ValueError("base_code.magic is not 'pir'")
        ops = doc["program"]["regions"][0]["blocks"][0]["ops"]
        if not isinstance(ops, list):
            raise TypeError("ops is not a list")
        return [_pir_variable(op) for op in ops if op.get("#") == _PIR_PARAMETER_OP]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise WeightFileError(
            f"{path}: not a Paddle PIR program written by paddle.jit.save "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _pir_variable(op: dict) -> _Variable:
    # A parameter op's attributes end with the parameter's name; its one output's type is
    # ["0.t_dtensor", [element type, dims, layout, lod, offset]].
    name = op["A"][-1]
    element, dims = op["O"]["TT"]["D"][:2]
    if not isinstance(name, str) or not isinstance(dims, list):
        raise TypeError(f"parameter op {str(op)[:100]} has no name or no dims")
    if element.get("#") not in _PIR_DTYPES:
        raise ValueError(f"parameter {name[:100]!r} has type {element.get('#')!r}, not a number")
    return _Variable(name, _PIR_DTYPES[element["#"]], _shape(dims, name))


def _shape(dims, name: str) -> tuple[int, ...]:
    if len(dims) > _MAX_NDIM or not all(type(d) is int and d >= 0 for d in dims):
        raise ValueError(f"{name[:100]!r}: dims {str(dims)[:100]} are not up to 32 sizes >= 0")
    return tuple(dims)


# -- the Paddle 2.x program: ProgramDesc protobuf ----------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise ValueError("varint runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one protobuf message: ints for varints, views for the rest."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            size = {1: 8, 5: 4}.get(wire)
            if size is None:
                size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"field {field} runs past the end of its message")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"field {field} has wire type {wire}, which Paddle never writes")
        yield field, value


def _message(buf: memoryview, field: int) -> memoryview | None:
    """The last occurrence of embedded message ``field`` (protobuf's merge rule for one)."""
    found = None
    for number, value in _fields(buf):
        if number == field and isinstance(value, memoryview):
            found = value
    return found


def _int64s(buf: memoryview, field: int) -> list[int]:
    """A repeated int64, packed or not, as signed values."""
    values: list[int] = []
    for number, value in _fields(buf):
        if number != field:
            continue
        if isinstance(value, int):
            values.append(value)
        else:
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                values.append(item)
        if len(values) > _MAX_NDIM:
            raise ValueError(f"more than {_MAX_NDIM} dims")
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


def _tensor_desc(buf: memoryview) -> tuple[int, list[int]]:
    """(data type, dims) of a ``VarType.TensorDesc``."""
    dtypes = [v for number, v in _fields(buf) if number == 1 and isinstance(v, int)]
    if not dtypes:
        raise ValueError("TensorDesc without a data type")
    return dtypes[-1], _int64s(buf, 2)


def _pdmodel_variables(data: bytes, path: Path) -> list[_Variable]:
    """The persistable dense tensors of the program's first (global) block."""
    try:
        block = _message(memoryview(data), 1)  # ProgramDesc.blocks
        if block is None:
            raise ValueError("the program has no block")
        found = []
        for number, var in _fields(block):
            if number == 3 and isinstance(var, memoryview):  # BlockDesc.vars
                found += _pdmodel_variable(var)
        return found
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightFileError(
            f"{path}: not a Paddle ProgramDesc written by paddle.jit.save ({exc})"
        ) from None


def _pdmodel_variable(var: memoryview) -> list[_Variable]:
    # VarDesc: 1 name, 2 VarType, 3 persistable. VarType: 1 type, 3 LoDTensorDesc, whose
    # field 1 is the TensorDesc. Feed and fetch variables are persistable but no tensors.
    fields = list(_fields(var))
    names = [bytes(v).decode("utf-8") for n, v in fields if n == 1 and isinstance(v, memoryview)]
    persistable = any(n == 3 and v == 1 for n, v in fields)
    var_type = _message(var, 2)
    if not names or var_type is None:
        raise ValueError("a variable without a name or a type")
    kinds = [v for n, v in _fields(var_type) if n == 1 and isinstance(v, int)]
    if not persistable or kinds[-1:] != [_PROTO_DENSE_TENSOR]:
        return []
    lod_tensor = _message(var_type, 3)
    desc = _message(lod_tensor, 1) if lod_tensor is not None else None
    if desc is None:
        raise ValueError(f"variable {names[-1][:100]!r} has no tensor description")
    dtype, dims = _tensor_desc(desc)
    return [_Variable(names[-1], dtype, _shape(dims, names[-1]))]


# -- the parameters: the combined tensor stream ------------------------------------------------


class _Stream:
    """A bounds-checked cursor over the parameters file."""

    def __init__(self, buffer: bytearray, path: Path) -> None:
        self.buffer, self.pos, self.path = buffer, 0, path

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.buffer):
            raise WeightFileError(
                f"{self.path}: truncated or crafted: {what} needs {size:,} bytes at offset "
                f"{self.pos:,}, the file has {len(self.buffer) - self.pos:,} left"
            )
        view = memoryview(self.buffer)[self.pos : self.pos + size]
        self.pos += size
        return view

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "little")


def _read_tensors(
    buffer: bytearray, variables: list[_Variable], path: Path
) -> dict[str, np.ndarray]:
    stream = _Stream(buffer, path)
    out: dict[str, np.ndarray] = {}
    for var in variables:
        out[var.name] = _read_tensor(stream, var)
    if stream.pos != len(buffer):
        raise WeightFileError(
            f"{path}: {len(buffer) - stream.pos:,} bytes follow the program's {len(variables)} "
            "parameters; the file belongs to another program or is crafted"
        )
    return out


def _read_tensor(stream: _Stream, var: _Variable) -> np.ndarray:
    name, path = var.name[:100], stream.path
    if stream.uint(4, f"{name!r}'s version") != 0:
        raise WeightFileError(f"{path}: tensor {name!r} has a version other than 0")
    levels = stream.uint(8, f"{name!r}'s LoD level count")
    if levels > _MAX_LOD_LEVELS:
        raise WeightFileError(f"{path}: tensor {name!r} claims {levels:,} LoD levels")
    for _ in range(levels):
        stream.take(stream.uint(8, f"{name!r}'s LoD size"), f"{name!r}'s LoD")
    if stream.uint(4, f"{name!r}'s tensor version") != 0:
        raise WeightFileError(f"{path}: tensor {name!r} has a tensor version other than 0")
    desc_size = stream.uint(4, f"{name!r}'s description size")
    if not 0 < desc_size <= _MAX_DESC_BYTES:
        raise WeightFileError(f"{path}: tensor {name!r} has a {desc_size:,}-byte description")
    try:
        dtype, dims = _tensor_desc(stream.take(desc_size, f"{name!r}'s description"))
    except ValueError as exc:
        raise WeightFileError(f"{path}: tensor {name!r}'s description: {exc}") from None
    if (dtype, tuple(dims)) != (var.dtype, var.shape):
        raise WeightFileError(
            f"{path}: tensor {name!r} is type {dtype} of shape {tuple(dims)} but its program "
            f"says type {var.dtype} of shape {var.shape}; the files are not of one export"
        )
    if dtype not in _PROTO_DTYPES:
        raise WeightFileError(f"{path}: tensor {name!r} has unsupported data type {dtype}")
    np_dtype = _PROTO_DTYPES[dtype]
    raw = stream.take(math.prod(dims) * np_dtype.itemsize, f"{name!r}'s data")
    # A view into the file's own writable buffer: no second copy of the weights.
    return np.frombuffer(raw, dtype=np_dtype).reshape(var.shape)
