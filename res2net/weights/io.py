"""Reading, checking and writing weight files: ``.pdparams``, ``.safetensors``, ``.pth``.

Our native format is safetensors with timm's key names (which this package's modules
use), so the same file serves timm users. PaddleClas files are renamed on load. Loading is
strict: every missing, unexpected or misshaped key is reported, never silently skipped.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from res2net.models.res2net import Res2Net, Res2NetConfig
from res2net.weights.errors import WeightFileError
from res2net.weights.paddle import paddle_names, read_pdparams, write_pdparams
from res2net.weights.paddle_inference import find_inference_model, read_inference_model

HEAD_KEYS = ("fc.weight", "fc.bias")
PADDLE_HEAD_WEIGHT = "out.weight"
# The head weight's parameter name in inference models (PaddleClas's ParamAttr name).
PADDLE_HEAD_PARAMETER = "fc_weights"


@dataclass
class LoadReport:
    """What :func:`load_weights` did: the file's format and naming, and what it skipped."""

    path: str
    format: str
    naming: str
    loaded: int
    skipped: list[str] = field(default_factory=list)


# Pickle opcode LONG1 with 10 bytes, then torch.serialization's MAGIC_NUMBER, little-endian.
_LEGACY_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _sniff_format(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise WeightFileError(f"{path}: file is empty (0 bytes); download or convert it again")
    suffix = path.suffix.lower()
    if head[:4] == b"PK\x03\x04":
        return "pth"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        # Legacy (pre-1.6) torch.save files, like many original-release checkpoints, are
        # pickles too: they open with torch's magic number, whatever the file is called.
        if head[2:14] == _LEGACY_TORCH_MAGIC:
            return "pth"
        return "pth" if suffix in (".pth", ".pt", ".bin", ".ckpt") else "pdparams"
    raise WeightFileError(
        f"{path}: unknown weight format (starts with {head[:8]!r}); expected .pdparams "
        "(paddle.save), .safetensors or .pth (torch.save)"
    )


def check_torch_zip(path: Path) -> None:
    """Refuse what ``torch.save`` never writes before torch reads it: compressed entries
    (a few bytes can inflate to gigabytes) and entries that claim more bytes than the file
    holds; so reading the file never takes more memory than its size.

    :raises WeightFileError: naming the file and the entry.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightFileError(f"{path}: not a readable .pth zip archive ({exc})") from None
    size = path.stat().st_size
    for info in entries:
        if info.compress_type != zipfile.ZIP_STORED:
            raise WeightFileError(
                f"{path}: zip entry {info.filename[:100]!r} is compressed; torch.save stores "
                "entries uncompressed, so this file was not written by it and is refused"
            )
        if info.file_size > size or info.header_offset + info.file_size > size:
            raise WeightFileError(
                f"{path}: zip entry {info.filename[:100]!r} claims {info.file_size:,} bytes, "
                f"more than the file's {size:,}; the file is truncated or crafted"
            )


def _read_pth(path: Path) -> dict[str, Tensor]:
    if zipfile.is_zipfile(path):
        check_torch_zip(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad or unsafe files
        raise WeightFileError(
            f"{path}: cannot read as a PyTorch checkpoint with weights_only=True "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    # Training checkpoints nest the weights; take the usual containers.
    for container in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(container), dict):
            obj = obj[container]
            break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise WeightFileError(f"{path}: expected a dict of name -> tensor (a state_dict)")
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def read_weight_file(path: str | os.PathLike) -> tuple[dict[str, Tensor], str, dict[str, str]]:
    """Read any supported weight file into CPU tensors, without renaming.

    :param path: a file, or a PaddleClas inference model: its directory (holding
        ``inference.pdiparams``), its ``.pdiparams`` or its program (``.pdmodel``/``.json``).
    :returns: ``(state, format, metadata)``; format is ``pdparams``, ``safetensors``,
        ``pth`` or ``paddle-inference``; metadata is the safetensors header's
        ``__metadata__`` (else empty).
    """
    path = Path(path)
    inference_model = find_inference_model(path)
    if inference_model is not None:
        arrays = read_inference_model(inference_model)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}, "paddle-inference", {}
    if not path.is_file():
        raise WeightFileError(f"{path}: no such weight file")
    try:
        return _read_any(path)
    except OSError as exc:
        # Files that stat as regular but cannot be read as one (/proc/self/mem, a file on
        # a failing disk) are a user error: name the file.
        raise WeightFileError(
            f"{path}: cannot be read as a weight file ({exc.strerror or exc}); give a "
            ".pdparams, .safetensors or .pth file"
        ) from None


def _read_any(path: Path) -> tuple[dict[str, Tensor], str, dict[str, str]]:
    fmt = _sniff_format(path)
    if fmt == "pdparams":
        arrays = read_pdparams(path)
        # The reader's arrays are its own, writable copies: no second copy needed.
        return {k: torch.from_numpy(v) for k, v in arrays.items()}, fmt, {}
    if fmt == "pth":
        return _read_pth(path), fmt, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            metadata = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - a crafted header may fail in many ways
        raise WeightFileError(
            f"{path}: unreadable or truncated .safetensors file ({type(exc).__name__}: "
            f"{str(exc)[:200]})"
        ) from None
    return state, fmt, metadata


def is_paddle_naming(state: dict[str, Tensor]) -> bool:
    """Whether keys follow PaddleClas's structured names (``*._conv.weight``) or its
    parameter names (``*_weights``, as in inference models)."""
    return any(k.endswith(("._conv.weight", "_weights")) for k in state)


def from_paddle_names(state: dict[str, Tensor], model: Res2Net) -> dict[str, Tensor]:
    """Rename a PaddleClas state dict (structured or parameter names) to ``model``'s keys;
    unknown keys are kept as they are.

    The head weight is transposed (Paddle's Linear stores [in, out]).
    """
    reverse = {theirs: ours for ours, theirs in paddle_names(model).items()}
    reverse.update(
        {theirs: ours for ours, theirs in paddle_names(model, parameter_names=True).items()}
    )
    out = {}
    for key, value in state.items():
        if key in (PADDLE_HEAD_WEIGHT, PADDLE_HEAD_PARAMETER) and value.ndim == 2:
            value = value.t().contiguous()
        out[reverse.get(key, key)] = value
    return out


def to_paddle_names(state: dict[str, Tensor], model: Res2Net) -> dict[str, Tensor]:
    """The inverse of :func:`from_paddle_names`: our keys to PaddleClas's, head transposed."""
    names = paddle_names(model)
    out = {}
    for key, value in state.items():
        if key not in names:
            continue
        if key == "fc.weight":
            value = value.t().contiguous()
        out[names[key]] = value
    return out


@functools.cache
def _signature(config: Res2NetConfig) -> tuple[frozenset, frozenset, frozenset]:
    """The (key, shape) sets of a network of ``config``: ours, PaddleClas's structured
    names (``.pdparams``) and its parameter names (inference models)."""
    with torch.device("meta"):
        model = Res2Net(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = {(k, s) for k, s in shapes.items() if not k.endswith("num_batches_tracked")}

    def paddle(parameter_names: bool) -> frozenset:
        names = paddle_names(model, parameter_names=parameter_names)
        # Paddle's Linear stores [in, out]: the head weight's shape is reversed.
        return frozenset(
            (n, shapes[k][::-1] if k == "fc.weight" else shapes[k]) for k, n in names.items()
        )

    return frozenset(ours), paddle(False), paddle(True)


# A candidate architecture for :func:`guess_model`: (name, config, family), the family being
# ``"paddleclas"`` (PaddleClas's key names) or ``"official"``.
Candidate = tuple[str, Res2NetConfig, str]


def guess_model(state: dict[str, Tensor], candidates: Sequence[Candidate]) -> str | None:
    """The first of ``candidates`` whose keys and shapes match ``state`` (head ignored).

    PaddleClas-named files are matched to PaddleClas entries first, others to official ones.
    """

    def body(sig):
        return {(k, s) for k, s in sig if not k.startswith(("fc.", "out.", "fc_"))}

    found = body((k, tuple(v.shape)) for k, v in state.items() if "num_batches" not in k)
    paddle_named = is_paddle_naming(state)
    family = "paddleclas" if paddle_named else "official"
    which = 0
    if paddle_named:
        which = 1 if any(k.endswith("._conv.weight") for k in state) else 2
    matches = [
        (fam != family, name)
        for name, config, fam in candidates
        if found == body(_signature(config)[which])
    ]
    return min(matches, key=lambda m: m[0])[1] if matches else None


# Keys shown per kind of mismatch: a wrong architecture misfits hundreds of keys, and the
# first few plus the counts say as much as all of them.
SHOWN_KEYS = 5


def _first(keys: list[str], shown: int = SHOWN_KEYS) -> str:
    more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def _describe_mismatch(
    path: Path, model: Res2Net, missing, unexpected, misshaped, raw_state, file_meta, candidates
) -> WeightFileError:
    lines = [
        f"{path}: weights do not fit this model ({_arch_name(model.config)}): "
        f"{len(misshaped)} misshaped, {len(missing)} missing, {len(unexpected)} unexpected "
        "key(s)."
    ]
    if file_meta and "res2net_training" in file_meta:
        lines.append(
            "The file records the architecture it was trained with: build the model from the "
            "file instead of naming one (res2net.build_model(res2net.load_card(path)), "
            "Predictor(None, path); on the command line, leave out --model)."
        )
    guess = guess_model(raw_state, candidates)
    configs = {name: config for name, config, _ in candidates}
    if guess is not None and replace(configs[guess], flavour=model.config.flavour) != model.config:
        lines.append(f"The file looks like weights for {guess}; build that model instead.")
    if misshaped:
        lines.append(f"Misshaped (file vs model), first {min(len(misshaped), SHOWN_KEYS)}:")
        lines += [f"  {k}: {a} vs {b}" for k, a, b in misshaped[:SHOWN_KEYS]]
    if missing:
        lines.append("Missing: " + _first(missing))
    if unexpected:
        lines.append("Unexpected: " + _first(unexpected))
    if set(k for k, *_ in misshaped) <= set(HEAD_KEYS) and not missing and not unexpected:
        lines.append(
            "Only the classifier differs: to fine-tune, load with skip_head=True "
            "(create_model(..., num_classes=N) does this for N != 1000)."
        )
    return WeightFileError("\n".join(lines))


def _arch_name(config: Res2NetConfig) -> str:
    vd = "_vd" if config.deep_stem else ""
    return f"Res2Net{config.depth}{vd}_{config.width}w_{config.scales}s, {config.flavour} flavour"


def load_weights(
    model: Res2Net,
    path: str | os.PathLike,
    *,
    skip_head: bool = False,
    candidates: Sequence[Candidate] = (),
) -> LoadReport:
    """Load a ``.pdparams``, ``.safetensors`` or ``.pth`` file into ``model``, strictly.

    :param model: a :class:`Res2Net` of the file's architecture.
    :param path: the weight file; format is detected from its content.
    :param skip_head: leave the classifier as it is and ignore the file's (for fine-tuning
        with another ``num_classes``, or feature extraction). Skipped keys are reported.
    :param candidates: architectures a mismatching file may be for, to name in the error
        (:func:`res2net.builder.load_weights` passes the registry's).
    :raises WeightFileError: unreadable file, or any missing / unexpected / misshaped key
        (counted, the first few named, with the architecture the file looks like).
    """
    path = Path(path)
    raw, fmt, file_meta = read_weight_file(path)
    naming = "paddleclas" if is_paddle_naming(raw) else "timm"
    state = from_paddle_names(raw, model) if naming == "paddleclas" else raw
    target = model.state_dict()
    skipped: list[str] = []
    head_in_model = [k for k in HEAD_KEYS if k in target]
    if skip_head or not head_in_model:
        skipped = [k for k in HEAD_KEYS if k in state]
        state = {k: v for k, v in state.items() if k not in HEAD_KEYS}
        target = {k: v for k, v in target.items() if k not in HEAD_KEYS}

    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    misshaped = [
        (k, tuple(state[k].shape), tuple(target[k].shape))
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    if missing or unexpected or misshaped:
        raise _describe_mismatch(
            path, model, missing, unexpected, misshaped, raw, file_meta, candidates
        )
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value.to(target[key].dtype))
    return LoadReport(str(path), fmt, naming, len(state), skipped)


def save_safetensors(
    state: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``state`` as ``.safetensors`` atomically (temp file in the same folder + rename).

    A crash mid-write leaves any earlier file at ``path`` untouched.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def convert_weights(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model: Res2Net,
    name: str,
    *,
    naming: str = "res2net",
    candidates: Sequence[Candidate] = (),
) -> Path:
    """Load ``src`` into ``model`` (strictly) and write the result to ``dst``.

    A ``dst`` ending in ``.pdparams`` gets PaddleClas's file (:func:`save_pdparams`);
    any other name gets ``.safetensors``.

    :param name: the model's registered name, for the file's metadata.
    :param naming: ``"res2net"`` (ours, = timm's keys) or ``"timm"`` (identical keys; the
        metadata says so) for a ``.safetensors`` output. The name-level entry point, which
        checks the flavour, is :func:`res2net.builder.convert_weights`.
    """
    report = load_weights(model, src, candidates=candidates)
    if Path(dst).suffix.lower() == ".pdparams":
        return save_pdparams(model, dst)
    metadata = {
        "format": "res2net" if naming == "res2net" else "pt",
        "model": name,
        "flavour": model.config.flavour,
        "source_format": report.format,
        "source": Path(src).name,
        "config": json.dumps(asdict(model.config)),
    }
    return save_safetensors(model.state_dict(), dst, metadata)


def save_pdparams(model: Res2Net, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a ``.pdparams`` that PaddleClas's network of the same
    architecture loads with ``set_state_dict(paddle.load(path))``: its structured names,
    shapes (the head transposed) and float32, and its table of parameter names.

    :raises ValueError: ``model`` is of the official flavour, which PaddleClas's networks do
        not compute (the weights would load and give other results), or has no classifier.
    """
    if model.config.flavour != "paddle":
        raise ValueError(
            f"model= is {_arch_name(model.config)}: PaddleClas's networks compute the "
            "paddle flavour only, so they would load these weights and compute something "
            "else; write .safetensors instead (see README, 'Two flavours')"
        )
    state = model.state_dict()
    if not all(k in state for k in HEAD_KEYS):
        raise ValueError("model= has no classifier; PaddleClas's networks always have one")
    arrays = {
        name: value.detach().to("cpu", torch.float32).numpy()
        for name, value in to_paddle_names(state, model).items()
    }
    structured = paddle_names(model)
    parameters = paddle_names(model, parameter_names=True)
    table = {structured[k]: parameters[k] for k in structured}
    return write_pdparams(arrays, table, path)
