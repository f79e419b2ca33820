"""The training config: a typed schema read from YAML, with ``key=value`` overrides.

A config has one section per concern (``model``, ``data``, ``optim``, ``schedule``, ``loss``,
``augment``, ``train``, ``distill``, ``output``). Every key is a dataclass field below, so a
misspelt key is an error that names the key and the closest valid one, instead of a silently
ignored setting (PaddleClas's YAML accepts anything). The files in ``configs/`` are the
readable recipes; the defaults here are PaddleClas's ImageNet recipe for Res2Net
(``ppcls/configs/ImageNet/Res2Net/*.yaml`` in PaddleClas: 200 epochs, SGD momentum 0.9,
cosine learning rate 0.1 stepped per iteration, L2 decay 1e-4, label smoothing 0.1, Mixup
alpha 0.2, batch 64 per GPU, random resized crop 224 and flip; eval resize 256, crop 224).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from res2net.checks import check_number
from res2net.models.config import Res2NetConfig


class ConfigError(ValueError):
    """A config file or override has an unknown key or a value of the wrong type."""


# An explicit architecture (``model.arch``, ``distill.teacher_arch``) is the network's own
# config class, so every field it has (cardinality included) is a valid key, with its checks.
ArchConfig = Res2NetConfig


@dataclass
class ModelConfig:
    """Which network: a registered ``name`` or an explicit ``arch`` (exactly one)."""

    name: str | None = None
    arch: ArchConfig | None = None
    num_classes: int = 1000
    # A weight file (or ``true`` for the published weights) to start from; the head is
    # re-initialised when ``num_classes`` differs from the file's.
    pretrained: Any = False
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    # From scratch, start every residual block as the identity (last BN's scale = 0): deep
    # nets then train stably from the first step (Goyal et al., 2017; torchvision's option).
    zero_init_residual: bool = True


@dataclass
class DataConfig:
    """Where the images are and how they are augmented.

    ``train_dir`` / ``val_dir`` are ImageFolder layouts (one sub-folder per class, sorted
    names = class ids) unless ``train_list`` / ``val_list`` give PaddleClas list files
    (``relative/path label`` per line, paths relative to the folder).
    """

    train_dir: str = ""
    val_dir: str = ""
    train_list: str | None = None
    val_list: str | None = None
    image_size: int = 224
    resize_short: int = 256
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_workers: int = 4
    pin_memory: bool = True
    # "skip": a corrupt image is left out of its batch with a counted warning; "fail": stop.
    on_corrupt: str = "skip"


@dataclass
class OptimConfig:
    """SGD with momentum; weight decay applies to all parameters, as PaddleClas's L2."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    """Cosine decay stepped every iteration, after an optional linear warmup."""

    epochs: int = 200
    warmup_epochs: float = 0.0
    min_lr: float = 0.0


@dataclass
class LossConfig:
    label_smoothing: float = 0.1


@dataclass
class AugmentConfig:
    """Batch mixing: ``mixup`` / ``cutmix`` are Beta alphas (0 disables); one is picked per
    batch with probability ``cutmix_prob`` for cutmix when both are on."""

    mixup: float = 0.2
    cutmix: float = 0.0
    cutmix_prob: float = 0.5


@dataclass
class TrainConfig:
    """Loop settings. ``batch_size`` is per process (per GPU under torchrun)."""

    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    amp: str = "none"  # "none", "bf16" or "fp16" (GPU only)
    grad_clip: float | None = None
    ema_decay: float | None = None
    log_every: int = 50
    ckpt_every_steps: int = 0  # 0: only at the end of each epoch
    eval_every_epochs: int = 1
    max_steps: int | None = None  # stop early (tests, smoke runs)
    deterministic: bool = False
    progress: bool = True


@dataclass
class DistillConfig:
    """SSLD-style distillation from a frozen teacher's soft outputs.

    ``loss`` is ``"js"`` (Jensen-Shannon divergence) or ``"dml"`` (symmetric KL).
    ``hard_weight`` adds that much label cross-entropy (0: soft outputs only, as SSLD).
    ``unlabeled_dirs`` are folders of images (any depth) added to the training data without
    labels; only the distillation loss sees them.
    ``teacher_weights`` is a weight file, or ``true`` for a registered ``teacher``'s
    published weights (downloaded and cached like ``create_model(..., pretrained=True)``).
    """

    teacher: str | None = None
    teacher_arch: ArchConfig | None = None
    teacher_weights: Any = None
    loss: str = "js"
    temperature: float = 1.0
    hard_weight: float = 0.0
    unlabeled_dirs: list[str] = field(default_factory=list)


@dataclass
class OutputConfig:
    dir: str = "runs/default"
    tensorboard: bool = True
    plot: bool = True


@dataclass
class Config:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None
    output: OutputConfig = field(default_factory=OutputConfig)


# The range of every numeric key, checked as the config is read (res2net.checks): a NaN
# learning rate or a negative epoch count is refused here instead of training garbage.
# (low, high, whole number); a float key not listed must still be finite.
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "model.num_classes": (1, 100_000, True),
    "data.image_size": (1, 4096, True),
    "data.resize_short": (1, 8192, True),
    "data.crop_scale": (0.0, 1.0, False),
    "data.crop_ratio": (0.01, 100.0, False),
    "data.std": (1e-6, None, False),  # divided by: 0 gives infinities
    "data.num_workers": (0, 256, True),
    "optim.lr": (0.0, 100.0, False),
    "optim.momentum": (0.0, 1.0, False),
    "optim.weight_decay": (0.0, 1.0, False),
    "schedule.epochs": (1, 100_000, True),
    "schedule.warmup_epochs": (0.0, 100_000, False),
    "schedule.min_lr": (0.0, 100.0, False),
    "loss.label_smoothing": (0.0, 1.0, False),
    "augment.mixup": (0.0, 100.0, False),
    "augment.cutmix": (0.0, 100.0, False),
    "augment.cutmix_prob": (0.0, 1.0, False),
    "train.batch_size": (1, 65_536, True),
    "train.seed": (0, 2**31 - 1, True),  # plus the rank, within numpy's 32-bit seeds
    "train.grad_clip": (0.0, None, False),
    "train.ema_decay": (0.0, 1.0, False),
    "train.log_every": (1, None, True),
    "train.ckpt_every_steps": (0, None, True),
    "train.eval_every_epochs": (1, None, True),
    "train.max_steps": (1, None, True),
    "distill.temperature": (0.01, 100.0, False),
    "distill.hard_weight": (0.0, 100.0, False),
}
# The network's own checks cover its other fields (depth, flavour). The published networks
# have at most 128 channels per stage-1 block (width x scales x cardinality: 26x4, 14x8,
# 48x2, 4x4x8); twice that is allowed. Parameters grow with its square: 256 makes a
# depth-200 net of about 200 M parameters, 1024 one of 2.3 billion (counted on torch's
# meta device).
_ARCH_RANGES = {"width": (1, 256, True), "scales": (2, 16, True), "cardinality": (1, 64, True)}
MAX_BRANCH_CHANNELS = 256
_RANGES |= {
    f"{section}.{key}": limits
    for section in ("model.arch", "distill.teacher_arch")
    for key, limits in _ARCH_RANGES.items()
}

_CHOICES = {
    "data.on_corrupt": ("skip", "fail"),
    "train.amp": ("none", "bf16", "fp16"),
    "distill.loss": ("js", "dml"),
}


def _unknown(key: str, path: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {path!r}{hint} (valid here: {', '.join(valid)})")


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), else None."""
    for cand in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(cand):
            return cand
    return None


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check a leaf value against its annotation; ints pass for floats, lists for tuples."""
    args = typing.get_args(tp)
    if value is None:
        if tp is Any or type(None) in args:
            return None
        raise ConfigError(f"config key {path!r} may not be null")
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {path!r} must be one of {args}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {path!r} must be a list, got {value!r}")
        if origin is tuple and len(value) != len(args):
            raise ConfigError(f"config key {path!r} must have {len(args)} items, got {value!r}")
        items = [
            _coerce(v, args[i] if origin is tuple else args[0], path) for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an int beyond float's range; the range check words it
            value = math.inf
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"config key {path!r} must be {tp.__name__}, got {value!r}")
    if tp in (int, float):
        low, high, integer = _RANGES.get(path, (None, None, tp is int))
        try:
            value = check_number(f"config key {path!r}", value, low=low, high=high, integer=integer)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if path in _CHOICES and value not in _CHOICES[path]:
        raise ConfigError(f"config key {path!r} must be one of {_CHOICES[path]}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or 'root'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in valid:
            raise _unknown(str(key), path, valid)
        sub = _dataclass_of(hints[key])
        if sub is not None and value is not None:
            kwargs[key] = _build(sub, value, path)
        else:
            kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section's own checks, e.g. Res2NetConfig's depth
        raise ConfigError(f"config section {prefix or 'root'!r}: {exc}") from None


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and check a :class:`Config` from nested dicts (as read from YAML)."""
    cfg = _build(Config, data or {}, "")
    if (cfg.model.name is None) == (cfg.model.arch is None):
        raise ConfigError("config 'model' needs exactly one of 'name' (registered) or 'arch'")
    if cfg.distill is not None and (cfg.distill.teacher is None) == (
        cfg.distill.teacher_arch is None
    ):
        raise ConfigError("config 'distill' needs exactly one of 'teacher' or 'teacher_arch'")
    _check_together(cfg)
    return cfg


def _teacher(cfg: Config) -> ArchConfig | None:
    return cfg.distill.teacher_arch if cfg.distill is not None else None


def _check_together(cfg: Config) -> None:
    """The checks that involve two keys, or a key that is not a number. A warmup longer than
    the run is allowed: the run stays in its linear warmup, as PaddleClas's (its Res2Net
    configs warm up 5 epochs, and ``-o Global.epochs=2`` is a valid short run there)."""
    for key in ("crop_scale", "crop_ratio"):
        low, high = getattr(cfg.data, key)
        if low > high:
            raise ConfigError(f"config key 'data.{key}' must be [low, high], got [{low}, {high}]")
    for key, arch in (("model.arch", cfg.model.arch), ("distill.teacher_arch", _teacher(cfg))):
        if arch is not None and arch.width * arch.scales * arch.cardinality > MAX_BRANCH_CHANNELS:
            raise ConfigError(
                f"config section {key!r}: width x scales x cardinality must be at most "
                f"{MAX_BRANCH_CHANNELS}, got {arch.width} x {arch.scales} x {arch.cardinality}"
            )
    if not cfg.output.dir.strip():
        raise ConfigError("config key 'output.dir' must name a folder, got an empty string")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dicts/lists (tuples become lists), e.g. to save next to a checkpoint."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override in place; the value is parsed as YAML."""

    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key=value, e.g. optim.lr=0.05")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key part; use dotted.key=value")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = _parse_yaml(raw, f"override {override!r}")


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; a syntax error, unknown tag or nesting too deep becomes a
    :class:`ConfigError` naming ``where`` and the line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"{where}: {line}{detail}") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deep") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (ours or PaddleClas's), checked to be UTF-8 and a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (see configs/ for examples)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    data = _parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections")
    return data


def config_from_data(
    data: dict[str, Any], overrides: list[str] | tuple = (), where: str | Path | None = None
) -> Config:
    """Apply ``key=value`` overrides to nested dicts and build the :class:`Config`; errors
    are prefixed with ``where`` (the file they came from)."""
    for override in overrides:
        apply_override(data, override)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Read a YAML config (or start from the defaults) and apply ``key=value`` overrides."""
    data = read_config_file(path) if path is not None else {}
    return config_from_data(data, overrides, path)
