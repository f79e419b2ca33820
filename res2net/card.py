"""The model card: everything needed to rebuild, feed and describe one model, as data.

A :class:`ModelCard` holds the architecture (:class:`~res2net.models.config.Res2NetConfig`,
flavour included), the class count and names, the eval :class:`~res2net.data.preprocess.
Preprocess`, where the weights come from (URL + SHA-256, or a local file), the family, the
publisher's figures and the numeric precision. It is the one object that travels from a
name or a file to a prediction, and it has one JSON form (:meth:`ModelCard.to_dict` /
:meth:`ModelCard.from_dict`), which ``res2net train`` writes into its ``.safetensors``
(header key ``res2net_training``) and ``res2net export`` into the ``.json`` beside the
model. :func:`load_card` reads a card back from a registered name or either kind of file.

This module imports no torch; building a network from a card is :mod:`res2net.builder`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from res2net import limits
from res2net.data.preprocess import Preprocess, PreprocessError
from res2net.deploy.engines import FORMATS
from res2net.models.config import DEPTHS, Res2NetConfig
from res2net.models.registry import REGISTRY, ModelEntry, Published, get_entry
from res2net.weights.errors import WeightFileError

CARD_VERSION = 1
PRECISIONS = ("fp32", "bf16", "int8")
TRAINING_KEY = "res2net_training"  # the safetensors header key of a training export's card
MAX_CLASSES = limits.MAX_CLASSES
# Bounds of a sane architecture: a crafted file must not make us build a huge network.
_ARCH_MAX = {
    "width": limits.MAX_WIDTH, "scales": limits.MAX_SCALES, "cardinality": limits.MAX_CARDINALITY
}  # fmt: skip
_STAGE_CHANNELS = (256, 512, 1024, 2048)  # a ResNet's bottleneck outputs, stage by stage
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ARCH_TYPES = {f.name: f.type for f in fields(Res2NetConfig)}


class CardError(ValueError):
    """A card record that cannot be used; the message names the key and what it must be."""


class ExportedModelError(ValueError):
    """An exported model or its metadata is missing, corrupt or does not belong together."""


@dataclass(frozen=True)
class WeightSource:
    """Where a card's weights come from: a published ``url`` (with its pinned ``sha256``,
    if any) or a local ``path``; neither means random initialization."""

    url: str = ""
    sha256: str | None = None
    path: str | None = None

    @property
    def format(self) -> str:
        """File format at ``url``: ``pdparams``, ``safetensors`` or ``pth`` ("" without)."""
        return self.url.rsplit(".", 1)[-1] if self.url else ""


@dataclass(frozen=True)
class ModelCard:
    """One model, as data. ``config`` is ``None`` only for an export of a network that is
    not a Res2Net (nothing to rebuild, but still a preprocessing and labels to apply)."""

    name: str | None
    config: Res2NetConfig | None
    num_classes: int = 1000
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: tuple[str, ...] | None = None
    weights: WeightSource = field(default_factory=WeightSource)
    family: str | None = None
    published: Published | None = None
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (the inverse of :meth:`from_dict`)."""
        return {
            "card_version": CARD_VERSION,
            "model": self.name,
            "family": self.family,
            "arch": asdict(self.config) if self.config is not None else None,
            "num_classes": self.num_classes,
            "preprocess": self.preprocess.to_dict(),
            "labels": list(self.labels) if self.labels is not None else None,
            "weights": {**asdict(self.weights), "format": self.weights.format},
            "published": asdict(self.published) if self.published is not None else None,
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "card") -> ModelCard:
        """A card from :meth:`to_dict`'s form, checked field by field. Also reads what
        earlier versions wrote: training metadata with ``classes`` for ``labels`` and no
        ``interpolation``/``style`` in its preprocessing.

        :param where: how the record is named in errors (a file name, say).
        :raises CardError: naming the first bad key and what it must be.
        """
        if not isinstance(data, dict):
            raise CardError(f"{where}: must be a JSON object, not {type(data).__name__}")
        if unknown := sorted(set(data) - set(_KEYS)):
            raise CardError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a card has "
                f"{', '.join(k for k in _KEYS if k != 'classes')}"
            )
        if missing := [k for k in ("num_classes", "preprocess") if k not in data]:
            raise CardError(f"{where}: missing key(s) {', '.join(missing)}")
        n = data["num_classes"]
        if type(n) is not int or not 1 <= n <= MAX_CLASSES:
            raise CardError(
                f"{where}.num_classes = {n!r}: must be a whole number from 1 to {MAX_CLASSES:,}"
            )
        try:
            preprocess = Preprocess.from_dict(data["preprocess"], f"{where}.preprocess")
        except PreprocessError as exc:
            raise CardError(str(exc)) from None
        precision = data.get("precision") or "fp32"
        if precision not in PRECISIONS:
            raise CardError(f"{where}.precision = {precision!r}: must be one of {PRECISIONS}")
        name = data.get("model") or None  # exports of unnamed networks wrote ""
        if name is not None:
            check_name(name, f"{where}.model")
        family = data.get("family")
        if family not in (None, "paddleclas", "official"):
            raise CardError(f"{where}.family = {family!r}: must be paddleclas, official or null")
        return cls(
            name=name,
            config=_config(data.get("arch"), where),
            num_classes=n,
            preprocess=preprocess,
            labels=_labels(data, n, where),
            weights=_weights(data.get("weights"), where),
            family=family,
            published=_published(data.get("published"), where),
            precision=precision,
        )


# Every key :meth:`ModelCard.from_dict` reads; "classes" is the older name of "labels".
_KEYS = (
    "card_version", "model", "family", "arch", "num_classes", "preprocess", "labels",
    "weights", "published", "precision", "classes",
)  # fmt: skip


def check_name(name: Any, where: str = "model") -> str:
    """``name`` if it is a plain name: letters, digits, ``_ . -``, not starting with a dot,
    no path separators and no ``..`` (a name from a file may become a file name in the
    weight cache, so it must never reach outside it).

    :raises CardError: naming ``where`` and what a name may hold.
    """
    if (
        not isinstance(name, str)
        or len(name) > limits.MAX_NAME_LENGTH
        or not _NAME.fullmatch(name)
        or ".." in name
    ):
        raise CardError(
            f"{where} = {str(name)[:200]!r}: not a model name; a name holds letters, digits, "
            f"'_', '.' and '-' (no path separators, no '..'), at most "
            f"{limits.MAX_NAME_LENGTH} characters"
        )
    return name


def estimate_params(config: Res2NetConfig) -> int:
    """The parameter count of ``config``'s network, in closed form (convolutions and the
    1000-class head; batch norms left out), so a declared architecture can be judged
    before anything is allocated."""
    total, inplanes = 64 * 3 * 49 + 2048 * 1000, 64
    for stage, (blocks, out) in enumerate(zip(DEPTHS[config.depth], _STAGE_CHANNELS, strict=True)):
        branch = config.width * 2**stage * config.cardinality
        inner = branch * config.scales
        per_block = inner * out + (config.scales - 1) * 9 * branch * branch // config.cardinality
        total += inplanes * out + blocks * per_block + inplanes * inner
        total += (blocks - 1) * out * inner
        inplanes = out
    return total


def _config(arch: Any, where: str) -> Res2NetConfig | None:
    if arch is None:
        return None
    if not isinstance(arch, dict) or set(arch) - set(_ARCH_TYPES):
        raise CardError(f"{where}.arch: must be an object with keys from {', '.join(_ARCH_TYPES)}")
    for key, value in arch.items():
        wanted = {"int": int, "bool": bool, "Flavour": str}[str(_ARCH_TYPES[key])]
        if type(value) is not wanted or (
            wanted is int and not 1 <= value <= _ARCH_MAX.get(key, value)
        ):
            raise CardError(
                f"{where}.arch.{key} = {value!r}: not a sane {wanted.__name__}"
                + (f" (1 to {_ARCH_MAX[key]})" if key in _ARCH_MAX else "")
            )
    try:
        config = Res2NetConfig(**arch)
    except (ValueError, TypeError) as exc:
        raise CardError(f"{where}.arch: not a valid Res2Net ({exc})") from None
    if (params := estimate_params(config)) > limits.MAX_PARAMS:
        raise CardError(
            f"{where}.arch: declares a network of about {params / 1e6:,.0f} M parameters, over "
            f"the limit of {limits.MAX_PARAMS / 1e6:,.0f} M; not a Res2Net this package builds"
        )
    return config


def _labels(data: dict, n: int, where: str) -> tuple[str, ...] | None:
    key = "labels" if "labels" in data else "classes"
    labels = data.get(key)
    if labels is None:
        return None
    if not (
        isinstance(labels, list) and len(labels) == n and all(isinstance(c, str) for c in labels)
    ):
        raise CardError(f"{where}.{key}: must be a list of {n} names (one per class) or null")
    return tuple(labels)


def _weights(data: Any, where: str) -> WeightSource:
    if data is None:
        return WeightSource()
    known = {"url", "sha256", "path", "format"}
    if not isinstance(data, dict) or set(data) - known:
        raise CardError(f"{where}.weights: must be an object with keys from {sorted(known)}")
    if not all(isinstance(data.get(k) or "", str) for k in known):
        raise CardError(f"{where}.weights: url, sha256, path and format must be strings")
    return WeightSource(data.get("url") or "", data.get("sha256"), data.get("path"))


def _published(data: Any, where: str) -> Published | None:
    if data is None:
        return None
    known = {f.name for f in fields(Published)}
    if not isinstance(data, dict) or set(data) - known:
        raise CardError(f"{where}.published: must be an object with keys from {sorted(known)}")
    return Published(**data)


def card_of(entry: ModelEntry) -> ModelCard:
    """The card of a registry entry: its architecture, published weights and figures."""
    return ModelCard(
        name=entry.name,
        config=entry.config,
        preprocess=entry.preprocess,
        weights=WeightSource(url=entry.url, sha256=entry.sha256),
        family=entry.family,
        published=entry.published,
    )


def load_card(name_or_path: str | os.PathLike) -> ModelCard:
    """The card of a registered name, of a ``.safetensors`` written by ``res2net train``,
    or of an exported model (``.onnx``, ``.xml``, ``.pt``, ``.pt2``, ``.pte``; read from the
    ``.json`` beside it, whose checksums are verified).

    :raises ValueError: an unknown name (with the closest ones), or a file that carries no
        card (:class:`~res2net.weights.errors.WeightFileError` /
        :class:`ExportedModelError` for broken ones).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in REGISTRY:
        return card_of(REGISTRY[text])
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise WeightFileError(f"{path}: no such weight file")
        card = training_card(path)
        if card is None:
            raise ValueError(
                f"{path}: carries no model card (not written by `res2net train`); name the "
                "registered model it belongs to"
            )
        return card
    if path.suffix in FORMATS.values():
        return export_card(path)
    if path.suffix or os.sep in text:
        raise ValueError(
            f"{path}: not a model card source; give a registered name, a `res2net train` "
            f".safetensors or an exported model ({', '.join(FORMATS.values())})"
        )
    return card_of(get_entry(text))


# -- training exports: the card in the .safetensors header ---------------------------------


def training_metadata(card: ModelCard) -> dict[str, str]:
    """The safetensors header entry that carries ``card`` in a training export."""
    return {TRAINING_KEY: json.dumps(card.to_dict())}


def read_training_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The raw card JSON that ``res2net train`` stores in a ``.safetensors`` ({} for other
    files and other suffixes).

    :raises WeightFileError: unreadable file, or metadata that is not a JSON object.
    """
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as fh:
            raw = (fh.metadata() or {}).get(TRAINING_KEY)
        meta = json.loads(raw) if raw else {}
    except Exception as exc:  # noqa: BLE001 - safetensors and json fail in many ways
        raise WeightFileError(
            f"{path}: unreadable training metadata ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(meta, dict):
        raise WeightFileError(f"{path}: training metadata is not a JSON object")
    return meta


def training_card(path: str | os.PathLike) -> ModelCard | None:
    """The card of a ``res2net train`` export (its ``weights.path`` is the file), or None
    for a file without one.

    :raises WeightFileError: a card that is broken or has no architecture, naming the key.
    """
    meta = read_training_metadata(path)
    if not meta:
        return None
    try:
        card = ModelCard.from_dict(meta, where="metadata")
        if card.config is None:
            raise CardError("missing metadata key(s) arch")
    except CardError as exc:
        raise WeightFileError(
            f"{path}: not a valid `res2net train` export: {exc}. Re-export it with "
            "`res2net train`, or name the registered model it belongs to."
        ) from None
    return replace(card, weights=replace(_registry_weights(card.name), path=str(path)))


# -- exported models: the card in the .json beside the model file ---------------------------


def metadata_path(model_path: str | os.PathLike) -> Path:
    """Where the metadata of an exported model lives: beside it, named ``<file>.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def files_of(path: Path) -> list[Path]:
    """The files that make up one exported model (OpenVINO keeps weights in a ``.bin``)."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export_metadata(model_path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported model, checked against the model file(s).

    :raises ExportedModelError: metadata missing or unreadable, or a model file that is
        missing or differs from the one exported with this metadata.
    """
    path = Path(model_path)
    meta_file = metadata_path(path)
    if not path.is_file():
        raise ExportedModelError(f"{path}: no such model file")
    if not meta_file.is_file():
        raise ExportedModelError(
            f"{path}: its metadata {meta_file.name} is missing; export with `res2net export`, "
            "which writes both"
        )
    try:
        meta = json.loads(meta_file.read_text())
        files = meta["files"]
        fmt = meta["format"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ExportedModelError(f"{meta_file}: not valid export metadata ({exc})") from None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ExportedModelError(
            f"{meta_file}: key 'files' must map each file name to its SHA-256; export again"
        )
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ExportedModelError(
            f"{meta_file}: key 'format' = {str(fmt)[:100]!r} is not one of "
            f"{', '.join(FORMATS)}; export again"
        )
    if FORMATS[fmt] != path.suffix:
        raise ExportedModelError(
            f"{path}: metadata {meta_file.name} describes a {fmt!r} export, not a "
            f"{path.suffix} file"
        )
    for part in files_of(path):
        if not part.is_file():
            raise ExportedModelError(f"{part}: missing (part of the {fmt} export {path.name})")
        if files.get(part.name) != sha256_of(part):
            raise ExportedModelError(
                f"{part}: does not match its metadata {meta_file.name} (SHA-256 differs): the "
                "file was modified, truncated or comes from another export; export again"
            )
    return meta


def card_from_export_metadata(meta: dict[str, Any], where: str = "metadata") -> ModelCard:
    """The card inside an export's metadata (which also holds format, files, input...).
    Exports made before cards were written have no ``arch``: a registered ``model`` gives
    it; one exported without preprocessing gets PaddleClas's default.

    :raises ExportedModelError: a card field that is broken, naming it.
    """
    data = {k: meta[k] for k in _KEYS if k in meta}
    if data.get("preprocess") is None:
        data["preprocess"] = Preprocess().to_dict()
    try:
        card = ModelCard.from_dict(data, where=where)
    except CardError as exc:
        raise ExportedModelError(f"{exc}; export the model again") from None
    if card.config is None and card.name in REGISTRY:
        entry = REGISTRY[card.name]
        card = replace(card, config=entry.config, family=entry.family)
    return replace(card, weights=_registry_weights(card.name))


def _registry_weights(name: str | None) -> WeightSource:
    """Where a card read from a file may get published weights: only from the registry
    entry of its name. A file describes itself; it never names a URL, a hash or a local
    path to load (metadata is data, not authority)."""
    entry = REGISTRY.get(name) if name is not None else None
    return WeightSource(url=entry.url, sha256=entry.sha256) if entry else WeightSource()


def export_card(model_path: str | os.PathLike) -> ModelCard:
    """The card of an exported model, its files verified (:func:`read_export_metadata`)."""
    meta = read_export_metadata(model_path)
    return card_from_export_metadata(meta, where=metadata_path(model_path).name)
