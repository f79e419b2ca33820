"""PaddleClas ``.pdparams`` files: a pickle reader that runs no code, and the name map.

``paddle.save`` writes a pickle of ``{structured name: numpy array}`` plus a bookkeeping
entry ``StructuredToParameterName@@``. A pickle can name any importable callable and have
it called (``os.system`` ...), so the reader below resolves the handful of numpy globals an
array needs to checked stand-ins of its own and refuses everything else before it is called.
"""

from __future__ import annotations

import io
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


def paddle_names(model: Res2Net) -> dict[str, str]:
    """Map each of ``model``'s state-dict keys (timm layout) to its PaddleClas name.

    BatchNorm ``num_batches_tracked`` buffers have no Paddle counterpart and are left out.
    """
    cfg = model.config
    # Module path (ours) -> Paddle layer prefix and kind ("conv", "bn" or "fc").
    modules: dict[str, tuple[str, str]] = {}
    if cfg.deep_stem:
        for ours, paddle_layer in (("0", "conv1_1"), ("3", "conv1_2"), ("6", "conv1_3")):
            modules[f"conv1.{ours}"] = (paddle_layer, "conv")
        modules["conv1.1"] = ("conv1_1", "bn")
        modules["conv1.4"] = ("conv1_2", "bn")
        modules["bn1"] = ("conv1_3", "bn")
    else:
        modules["conv1"] = ("conv1", "conv")
        modules["bn1"] = ("conv1", "bn")
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage):
            ours, theirs = f"layer{s + 1}.{i}", f"bb_{s}_{i}"
            letters = _stage_letters(cfg.depth, cfg.deep_stem, s, i)
            for a, b, paddle_layer in (("conv1", "bn1", "conv0"), ("conv3", "bn3", "conv2")):
                modules[f"{ours}.{a}"] = (f"{theirs}.{paddle_layer}", "conv")
                modules[f"{ours}.{b}"] = (f"{theirs}.{paddle_layer}", "bn")
            for k in range(len(block.convs)):
                branch = f"{theirs}.res{s + 2}{letters}_branch2b_{k + 1}"
                modules[f"{ours}.convs.{k}"] = (branch, "conv")
                modules[f"{ours}.bns.{k}"] = (branch, "bn")
            if block.downsample is not None:
                # The shortcut's conv and BN are the last two modules of the Sequential.
                n = len(block.downsample)
                modules[f"{ours}.downsample.{n - 2}"] = (f"{theirs}.short", "conv")
                modules[f"{ours}.downsample.{n - 1}"] = (f"{theirs}.short", "bn")
    modules["fc"] = ("out", "fc")

    names: dict[str, str] = {}
    for key in model.state_dict():
        module_path, _, attr = key.rpartition(".")
        if attr == "num_batches_tracked":
            continue
        if module_path not in modules:
            raise KeyError(f"no PaddleClas name for {key}")
        prefix, kind = modules[module_path]
        if kind == "conv":
            names[key] = f"{prefix}._conv.{attr}"
        elif kind == "bn":
            names[key] = f"{prefix}._batch_norm.{_BN_SUFFIX[attr]}"
        else:
            names[key] = f"{prefix}.{attr}"
    return names
