"""PaddleClas ``.pdparams`` files: a pickle reader that runs no code, and the name map.

``paddle.save`` writes a pickle of ``{structured name: numpy array}`` plus a bookkeeping
entry ``StructuredToParameterName@@``. A pickle can name any importable callable and have
it called (``os.system`` ...), so the reader below resolves the handful of numpy globals an
array needs to checked stand-ins of its own and refuses everything else before it is called.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np

from res2net.models.res2net import Res2Net
from res2net.weights.errors import WeightFileError

LEGACY_NAMES_KEY = "StructuredToParameterName@@"

# Containers nest this deep in a real file (dict -> array -> state tuple -> dtype -> its
# state); a crafted pickle nesting thousands deep can crash the interpreter when the
# result is hashed or compared, so the structure is checked before anything is built.
_MAX_DEPTH = 16
_MAX_NDIM = 32
# Pickle opcodes an array file never needs (class instantiation, extension registry,
# out-of-band buffers); persistent ids are refused by the unpickler itself.
_REFUSED_OPCODES = frozenset(
    {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
     "READONLY_BUFFER", "BYTEARRAY8", "PERSID", "BINPERSID"}
)  # fmt: skip
_TEXT_OPCODES = frozenset({"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"})
_MUTATING_OPCODES = frozenset({"SETITEM", "SETITEMS", "APPEND", "APPENDS", "BUILD", "ADDITEMS"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# Plain numeric dtypes only: object arrays would run code paths of their own, void/string
# ones can declare gigabytes per element.
_DTYPE_SPEC = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16))")


class UnsafePickleError(WeightFileError, pickle.UnpicklingError):
    """A weight file asked to load something a weight file never needs."""


class _Cell:
    """What the structure check knows of one value: text or not, and how deep it nests."""

    __slots__ = ("depth", "text")

    def __init__(self, depth: int = 0, text: bool = False) -> None:
        self.depth, self.text = depth, text


_MARK = object()


def _pop_to_mark(stack: list) -> list:
    items = []
    while stack and stack[-1] is not _MARK:
        items.append(stack.pop())
    if not stack:
        raise ValueError("MARK missing")
    stack.pop()
    return items[::-1]


def _check_structure(data: bytes, path: Path) -> None:
    """Walk the pickle's opcodes without building anything: refuse code-running opcodes,
    containers nested deeper than a weight file's, and dict keys that are not strings."""
    stack: list = []
    memo: dict = {}
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in _REFUSED_OPCODES:
            raise UnsafePickleError(f"{path}: pickle opcode {name} refused; not a .pdparams file")
        if name in _MEMO_PUT or name == "MEMOIZE":
            memo[arg if name != "MEMOIZE" else len(memo)] = stack[-1]
        elif name in _MEMO_GET:
            stack.append(memo[arg])
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "STOP":
            return
        else:
            _apply(op, stack, path)
    raise ValueError("no STOP opcode")


def _apply(op, stack: list, path: Path) -> None:
    before = op.stack_before
    items: list = []
    if pickletools.markobject in before:
        items = _pop_to_mark(stack)
        before = before[: before.index(pickletools.markobject)]
    prefix = [stack.pop() for _ in before][::-1]
    if _MARK in prefix:
        raise ValueError("unexpected MARK")
    operands = prefix + items
    if op.name in _MUTATING_OPCODES:
        container, others = operands[0], operands[1:]
        if op.name.startswith("SETITEM") and not all(c.text for c in others[0::2]):
            raise WeightFileError(
                f"{path}: a dict key is not a string; a .pdparams file maps names to arrays"
            )
        container.depth = max([container.depth] + [c.depth + 1 for c in others])
        result = [container]
    else:
        depth = max([c.depth + 1 for c in operands], default=0)
        result = [_Cell(depth, op.name in _TEXT_OPCODES) for _ in op.stack_after]
    if any(c.depth > _MAX_DEPTH for c in result):
        raise WeightFileError(
            f"{path}: values nested more than {_MAX_DEPTH} deep; a .pdparams file holds a "
            "flat dict of arrays"
        )
    stack.extend(result)


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` from a pickle, plain numeric types only."""

    def __init__(self, spec, align=False, copy=False) -> None:
        if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
            raise WeightFileError(f"array type {spec!r} refused; only numeric arrays are read")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state) -> None:
        # numpy's dtype state: (version, byte order, subarray, names, fields, itemsize, ...).
        if not isinstance(state, tuple) or len(state) < 5 or any(v is not None for v in state[2:5]):
            raise WeightFileError("array type with sub-arrays or fields refused")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _array_bytes(shape, dtype: _Dtype, raw) -> int:
    if not isinstance(dtype, _Dtype) or not isinstance(raw, bytes):
        raise WeightFileError("array state is not (shape, numeric dtype, bytes)")
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM:
        raise WeightFileError("array shape is not a tuple of at most 32 sizes")
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise WeightFileError(f"array shape {shape!r} is not made of sizes >= 0")
        count *= size
    declared = count * dtype.dtype.itemsize
    if declared != len(raw):
        # Checked before allocating: a few bytes must not declare gigabytes.
        raise WeightFileError(
            f"an array declares {declared:,} bytes ({shape}, {dtype.dtype}) but the file holds "
            f"{len(raw):,} for it; the file is corrupt or crafted"
        )
    return declared


class _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` + its BUILD, checked first."""

    array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, fortran order, bytes)
        if not isinstance(state, tuple) or len(state) != 4:
            raise WeightFileError("array state is not (shape, dtype, order, bytes)")
        shape, dtype, fortran, raw = state
        _array_bytes(shape, dtype, raw)
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = np.array(flat.reshape(shape, order="F" if fortran else "C"), order="C")


_NDARRAY = object()


def _reconstruct(cls, shape, typecode) -> _Array:
    if cls is not _NDARRAY:
        raise WeightFileError("array reconstruction of a type other than numpy.ndarray refused")
    return _Array()


def _scalar(dtype, raw) -> np.generic:
    _array_bytes((), dtype, raw)
    return np.frombuffer(raw, dtype=dtype.dtype)[0]


def _encode(text, encoding="utf-8") -> bytes:
    # Protocol-2 pickles carry bytes as latin-1 text passed to _codecs.encode.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightFileError("_codecs.encode used for something other than array bytes")
    return text.encode("latin1")


# (module, name) -> what the unpickler gets instead: checked stand-ins, never numpy's own
# constructors. numpy 1.x writes numpy.core.*, numpy 2.x numpy._core.*.
_STAND_INS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("_codecs", "encode"): _encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _STAND_INS:
            return _STAND_INS[(module, name)]
        raise UnsafePickleError(
            f"{self._path}: refused to load {module}.{name} from this pickle. A .pdparams "
            "weight file holds only numpy arrays; this one names other code, which was NOT "
            "run. Do not use this file; download the weights again from a trusted source."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: pickle uses persistent ids; not a .pdparams file")


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PaddlePaddle ``.pdparams`` file without Paddle and without running its code.

    The opcodes are checked first (no code-running opcodes, bounded nesting, string keys),
    then every array's declared size is compared with the bytes present before it is made,
    so memory stays within the file's size plus its arrays'.

    :returns: structured parameter name -> numpy array; Paddle's legacy-name table is dropped.
    :raises WeightFileError: (:class:`UnsafePickleError` for code-running content) the file
        is empty, truncated, not a pickle, crafted, or not a dict of name -> array.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise WeightFileError(f"{path}: file is empty (0 bytes); download it again")
    if data[:1] != b"\x80":
        raise WeightFileError(
            f"{path}: not a .pdparams file (no pickle header; starts with {data[:8]!r}). "
            "Expected a file written by paddle.save."
        )
    try:
        _check_structure(data, path)
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), path).load()
    except WeightFileError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise WeightFileError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a crafted pickle is the file's
        raise WeightFileError(
            f"{path}: unreadable or truncated .pdparams file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); download it again"
        ) from None
    return _arrays_of(obj, path)


def _arrays_of(obj, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    obj.pop(LEGACY_NAMES_KEY, None)
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, _Array) and value.array is not None:
            out[key] = value.array
        elif isinstance(value, np.generic):
            out[key] = np.asarray(value)
        else:
            raise WeightFileError(
                f"{path}: entry {key[:100]!r} is not an array ({type(value).__name__}); a "
                ".pdparams file maps parameter names to arrays"
            )
    return out


_BN_SUFFIX = {
    "weight": "weight",
    "bias": "bias",
    "running_mean": "_mean",
    "running_var": "_variance",
}


def _stage_letters(depth: int, deep_stem: bool, stage: int, index: int) -> str:
    """PaddleClas's block letters: res4a, res4b1, res4b2 ... in deep networks' third stage."""
    deep_nets = (101, 152, 200) if deep_stem else (101, 152)
    if depth in deep_nets and stage == 2:
        return "a" if index == 0 else f"b{index}"
    return chr(ord("a") + index)


def _paddle_layers(model: Res2Net) -> dict[str, tuple[str, str, str]]:
    """Our module path -> (PaddleClas sublayer path, kind, PaddleClas layer name).

    The kind is "conv", "bn" or "fc". The layer name is the ``name=`` PaddleClas's
    ``ConvBNLayer`` receives, from which it names its parameters (``ParamAttr(name=...)``).
    """
    cfg = model.config
    layers: dict[str, tuple[str, str, str]] = {}

    def conv_bn(conv: str, bn: str, path: str, name: str) -> None:
        layers[conv] = (path, "conv", name)
        layers[bn] = (path, "bn", name)

    if cfg.deep_stem:
        conv_bn("conv1.0", "conv1.1", "conv1_1", "conv1_1")
        conv_bn("conv1.3", "conv1.4", "conv1_2", "conv1_2")
        conv_bn("conv1.6", "bn1", "conv1_3", "conv1_3")
    else:
        conv_bn("conv1", "bn1", "conv1", "conv1")
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage):
            ours, theirs = f"layer{s + 1}.{i}", f"bb_{s}_{i}"
            name = f"res{s + 2}{_stage_letters(cfg.depth, cfg.deep_stem, s, i)}"
            conv_bn(f"{ours}.conv1", f"{ours}.bn1", f"{theirs}.conv0", f"{name}_branch2a")
            conv_bn(f"{ours}.conv3", f"{ours}.bn3", f"{theirs}.conv2", f"{name}_branch2c")
            for k in range(len(block.convs)):
                branch = f"{name}_branch2b_{k + 1}"
                conv_bn(f"{ours}.convs.{k}", f"{ours}.bns.{k}", f"{theirs}.{branch}", branch)
            if block.downsample is not None:
                # The shortcut's conv and BN are the last two modules of the Sequential.
                n = len(block.downsample)
                conv_bn(
                    f"{ours}.downsample.{n - 2}",
                    f"{ours}.downsample.{n - 1}",
                    f"{theirs}.short",
                    f"{name}_branch1",
                )
    layers["fc"] = ("out", "fc", "fc")
    return layers


# PaddleClas's ConvBNLayer: BN parameter names end in these (res2net.py / res2net_vd.py).
_BN_PARAMETER_SUFFIX = {
    "weight": "_scale",
    "bias": "_offset",
    "running_mean": "_mean",
    "running_var": "_variance",
}


def _parameter_name(layer: str, kind: str, attr: str) -> str:
    """PaddleClas's parameter name: ``res2a_branch2a_weights``, ``bn2a_branch2a_scale`` ...

    Its ConvBNLayer names the BN ``"bn_" + name`` for ``conv1`` and ``"bn" + name[3:]``
    otherwise (``res2a_...`` -> ``bn2a_...``, and so ``conv1_1`` -> ``bnv1_1``); the classifier's
    parameters are ``fc_weights`` and ``fc_offset``.
    """
    if kind == "bn":
        bn = "bn_" + layer if layer == "conv1" else "bn" + layer[3:]
        return bn + _BN_PARAMETER_SUFFIX[attr]
    return layer + ("_weights" if attr == "weight" else "_offset")


def paddle_names(model: Res2Net, *, parameter_names: bool = False) -> dict[str, str]:
    """Map each of ``model``'s state-dict keys (timm layout) to its PaddleClas name.

    :param parameter_names: give PaddleClas's parameter names (``res2a_branch2a_weights``:
        what inference models and ``StructuredToParameterName@@`` use) instead of its
        structured names (``bb_0_0.conv0._conv.weight``: what ``state_dict()`` uses).

    BatchNorm ``num_batches_tracked`` buffers have no Paddle counterpart and are left out.
    """
    layers = _paddle_layers(model)
    names: dict[str, str] = {}
    for key in model.state_dict():
        module_path, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        if module_path not in layers:
            raise KeyError(f"no PaddleClas name for {key}")
        prefix, kind, layer = layers[module_path]
        if parameter_names:
            names[key] = _parameter_name(layer, kind, attr)
        elif kind == "conv":
            names[key] = f"{prefix}._conv.{attr}"
        elif kind == "bn":
            names[key] = f"{prefix}._batch_norm.{_BN_SUFFIX[attr]}"
        else:
            names[key] = f"{prefix}.{attr}"
    return names


# -- writing ---------------------------------------------------------------------------------
# The file is written opcode by opcode rather than with pickle.dump: numpy 2 names its array
# constructor numpy._core.multiarray._reconstruct, which the numpy 1.x that PaddleClas pins
# cannot import, while numpy.core.multiarray._reconstruct loads in both. Protocol 3 carries
# each array's bytes as one raw BINBYTES string (protocol 2 would pass them as latin-1 text
# through _codecs.encode); paddle.save itself writes protocol 4, a superset.
_PROTOCOL = 3
_MAX_BINBYTES = 2**32 - 1


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"X" + len(data).to_bytes(4, "little") + data  # BINUNICODE


def _int(value: int) -> bytes:
    return b"J" + value.to_bytes(4, "little", signed=True)  # BININT


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _dtype_pickle(dtype: np.dtype) -> bytes:
    # numpy.dtype("f4", False, True), then its state (version 3, byte order, no sub-array,
    # no fields, itemsize and alignment -1 for a builtin type, no flags).
    order = "|" if dtype.itemsize == 1 else "<"
    call = b"cnumpy\ndtype\n" + _tuple(_text(dtype.str[1:]), b"\x89", b"\x88") + b"R"
    state = _tuple(_int(3), _text(order), b"N", b"N", b"N", _int(-1), _int(-1), _int(0))
    return call + state + b"b"


def _array_pickle(array: np.ndarray) -> bytes:
    # numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b"), then its state
    # (version 1, shape, dtype, Fortran order False, raw little-endian C-order bytes).
    array = np.asarray(array, dtype=np.asarray(array).dtype.newbyteorder("<"), order="C")
    raw = array.tobytes()
    if len(raw) > _MAX_BINBYTES:
        raise ValueError(f"array of {len(raw):,} bytes is too large for one pickle string")
    new = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + _tuple(_int(0))
        + b"C\x01b"  # SHORT_BINBYTES b"b"
        + b"\x87R"  # TUPLE3, REDUCE
    )
    shape = _tuple(*(_int(size) for size in array.shape))
    data = b"B" + len(raw).to_bytes(4, "little") + raw  # BINBYTES
    state = _tuple(_int(1), shape, _dtype_pickle(array.dtype), b"\x89", data)
    return new + state + b"b"


def pdparams_bytes(arrays: dict[str, np.ndarray], parameter_names: dict[str, str]) -> bytes:
    """A ``.pdparams`` pickle as ``paddle.save(layer.state_dict())`` lays it out: a dict of
    structured name -> numpy array, plus ``StructuredToParameterName@@``, the table of
    structured name -> parameter name. Nothing but arrays, strings and that table is in it.

    :param arrays: structured name -> array (numeric dtypes only).
    :param parameter_names: structured name -> PaddleClas parameter name.
    """
    parts = [b"\x80" + bytes([_PROTOCOL]), b"}("]
    for name, array in arrays.items():
        if not _DTYPE_SPEC.fullmatch(array.dtype.str):
            raise ValueError(f"{name}: dtype {array.dtype} is not a plain numeric type")
        parts += [_text(name), _array_pickle(array)]
    table = [_text(k) + _text(v) for k, v in parameter_names.items()]
    parts += [_text(LEGACY_NAMES_KEY), b"}(", *table, b"u", b"u."]  # SETITEMS, STOP
    return b"".join(parts)


def write_pdparams(
    arrays: dict[str, np.ndarray], parameter_names: dict[str, str], path: str | Path
) -> Path:
    """Write :func:`pdparams_bytes` to ``path`` atomically (a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(pdparams_bytes(arrays, parameter_names))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
