"""PaddleClas's own training YAML (``ppcls/configs/ImageNet/Res2Net/*.yaml``) as a training config.

A PaddleClas config is recognised by its top-level sections (``Global``, ``Arch``, ``Loss``,
``Optimizer``, ``DataLoader``, ``Infer``, ``Metric``, ``AMP``) and mapped onto our
:class:`~res2net.engine.config.Config`. The file is read as PaddleClas reads it
(``ppcls/utils/config.py``: a string value of a mapping that is a Python literal becomes that
literal; ``-o a.b.0.c=v`` overrides walk mappings and list indices), except that an override's
value is parsed as a literal, never run as code. Every key is either mapped, accepted for a
stated reason (``_HARMLESS``), or refused with its path in the file: nothing is ignored.
docs/paddleclas.md has the table of what maps and what does not.
"""

from __future__ import annotations

import ast
import contextlib
import math
from pathlib import Path
from typing import Any

from res2net.engine.config import Config, ConfigError, config_from_data, read_config_file

SECTIONS = ("Global", "Arch", "Loss", "Optimizer", "DataLoader", "Infer", "Metric", "AMP")

# Keys read and deliberately not acted on, with why (the docs repeat these reasons).
_HARMLESS = {
    "Global.checkpoints": "null only; resume a res2net run with --resume",
    "Global.image_shape": "used by PaddleClas's export only (res2net export takes --image-size)",
    "Global.save_inference_dir": "used by PaddleClas's export only (res2net export -o)",
    "Global.save_interval": "res2net writes last.pt every epoch, so at least this often",
    "DataLoader.*.sampler.name": "DistributedBatchSampler: res2net shards over torchrun ranks",
    "DataLoader.*.sampler.drop_last": "res2net always drops the last partial train batch",
    "DataLoader.*.loader.use_shared_memory": "PyTorch workers always pass batches in shm",
    "Infer.infer_imgs": "read by `res2net predict --config` only",
}


class PaddleClasConfigError(ConfigError):
    """A PaddleClas config key, op or value that res2net cannot honour; names its path."""


def is_paddleclas_config(data: dict[str, Any]) -> bool:
    """Whether a YAML mapping is PaddleClas's format (its capitalised top-level sections)."""
    return bool(data) and any(key in SECTIONS for key in data)


# ---------------------------------------------------------------------------------------------
# Reading as PaddleClas reads


def _literals(node: Any) -> Any:
    """PaddleClas's ``create_attr_dict``: strings in mappings (not in lists) that are Python
    literals become them, recursively through mappings."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(value)
        out[key] = _literals(value)
    return out


def _override_value(text: str) -> Any:
    """An ``-o`` value: a Python literal (PaddleClas ``eval``s it; we never run code), else
    the text itself, as PaddleClas keeps a value that does not evaluate."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def apply_paddleclas_override(data: dict[str, Any], option: str) -> None:
    """Apply one PaddleClas ``-o key.path=value`` in place; integer parts index lists, and
    a missing mapping key is created (as in PaddleClas's ``override_config``)."""
    if option.count("=") != 1:
        raise PaddleClasConfigError(
            f"-o {option!r}: must be key.path=value with one '=', e.g. Global.epochs=2"
        )
    key, text = option.split("=")
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PaddleClasConfigError(
                    f"-o {option!r}: {'.'.join(parts[:i]) or 'root'} is a list of "
                    f"{len(node)} items; {part!r} is not an index of it"
                )
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
        else:
            raise PaddleClasConfigError(
                f"-o {option!r}: {'.'.join(parts[:i])} is a value, not a section"
            )
        if last:
            node[index] = _override_value(text)
        else:
            node = node[index]


def read_paddleclas_config(path: str | Path, options: list[str] | tuple = ()) -> dict[str, Any]:
    """A PaddleClas YAML as PaddleClas's ``get_config(path, overrides=options)`` reads it."""
    try:
        data = _literals(read_config_file(path))
    except RecursionError:
        raise PaddleClasConfigError(f"{path}: YAML nested too deep") from None
    if not is_paddleclas_config(data):
        raise PaddleClasConfigError(
            f"{path}: not a PaddleClas config (no {', '.join(SECTIONS)} section)"
        )
    for option in options:
        apply_paddleclas_override(data, option)
    return data


# ---------------------------------------------------------------------------------------------
# A section whose keys must all be used


class _Section:
    """A mapping of the file; every key must be taken, what is left is an error naming it."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PaddleClasConfigError(f"{source}: {path} must be a mapping, got {data!r:.80}")
        self.data, self.path, self.source, self.taken = data, path, source, set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> PaddleClasConfigError:
        return PaddleClasConfigError(f"{self.source}: {self.where(key)}: {problem}")

    def get(self, key: str, default: Any = None) -> Any:
        self.taken.add(key)
        return self.data.get(key, default)

    def section(self, key: str) -> _Section:
        return _Section(self.get(key), self.where(key), self.source)

    def harmless(self, key: str, reason_key: str) -> None:
        """Take a key that res2net does not act on, for the reason in ``_HARMLESS``."""
        assert reason_key in _HARMLESS, reason_key
        self.taken.add(key)

    def done(self) -> None:
        for key in self.data:
            if key not in self.taken:
                raise self.error(
                    str(key), "not supported by res2net (see docs/paddleclas.md); remove it"
                )

    # typed values -------------------------------------------------------------------------

    def number(self, key: str, default: Any = None) -> float | None:
        value = self.get(key, default)
        if value is None:
            return None
        number = _as_number(value)
        if number is None:
            raise self.error(key, f"must be a number, got {value!r:.80}")
        return number

    def integer(self, key: str, default: Any = None) -> int | None:
        value = self.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise self.error(key, f"must be an integer, got {value!r:.80}")
        return value

    def expect(self, key: str, allowed: tuple, default: Any = None) -> Any:
        value = self.get(key, default)
        if value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            raise self.error(key, f"res2net supports only {shown}, got {value!r:.80}")
        return value


def _one_key(item: Any) -> bool:
    """An ``- Name: {params}`` list item: a mapping of exactly one key."""
    return isinstance(item, dict) and len(item) == 1


def _as_number(value: Any) -> float | None:
    """A number, or a string ``a/b`` of two numbers (PaddleClas writes ``1.0/255.0``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.count("/") == 1:
        parts = [_as_number(_override_value(p.strip())) for p in value.split("/")]
        if None not in parts and parts[1] != 0:
            return parts[0] / parts[1]
    return None


# ---------------------------------------------------------------------------------------------
# transform_ops: PaddleClas's preprocessing operators, in the order res2net applies them

_TRAIN_OPS = ("DecodeImage", "RandCropImage", "RandFlipImage", "NormalizeImage", "ToCHWImage")
_EVAL_OPS = ("DecodeImage", "ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage")
_REQUIRED = {"DecodeImage", "NormalizeImage", "RandCropImage", "ResizeImage", "CropImage"}


def _op_list(parent: _Section, key: str, order: tuple[str, ...]) -> dict[str, _Section]:
    """``parent[key]``, a list of one-op mappings, as ``{op: its params}``; an op res2net
    lacks, a repeated or missing one, or one out of res2net's order is named."""
    ops = parent.get(key)
    where = parent.where(key)
    if not isinstance(ops, list):
        raise parent.error(key, f"must be a list of operators, got {ops!r:.80}")
    found: dict[str, _Section] = {}
    for i, item in enumerate(ops):
        if not isinstance(item, dict) or len(item) != 1:
            raise parent.error(f"{key}[{i}]", f"must be one 'OpName: {{params}}', got {item!r:.80}")
        name, params = next(iter(item.items()))
        if name not in order:
            raise parent.error(
                f"{key}[{i}].{name}", f"operator not supported here (res2net: {', '.join(order)})"
            )
        if name in found or (found and order.index(name) < order.index(list(found)[-1])):
            raise parent.error(
                f"{key}[{i}].{name}", f"repeated or out of order (res2net: {', '.join(order)})"
            )
        found[name] = _Section(params, f"{where}[{i}].{name}", parent.source)
    missing = [op for op in order if op in _REQUIRED and op not in found]
    if missing:
        raise PaddleClasConfigError(f"{parent.source}: {where}: missing {', '.join(missing)}")
    return found


def _decode(op: _Section) -> None:
    op.expect("to_rgb", (True,), True)
    op.expect("channel_first", (False,), False)


def _normalize(op: _Section) -> dict[str, Any]:
    scale = op.number("scale")
    scale = 1.0 / 255.0 if scale is None else scale  # PaddleClas's default for null too
    if not math.isclose(scale, 1.0 / 255.0):
        raise op.error("scale", f"res2net scales pixels by 1/255 only, got {scale!r}")
    op.expect("order", ("", "hwc", "chw"), "")  # the layout only: res2net feeds CHW tensors
    out = {}
    for key, default in (("mean", [0.485, 0.456, 0.406]), ("std", [0.229, 0.224, 0.225])):
        value = op.get(key, default)
        numbers = [_as_number(v) for v in value] if isinstance(value, list) else []
        if len(numbers) != 3 or None in numbers:
            raise op.error(key, f"must be a list of 3 numbers, got {value!r:.80}")
        out[key] = numbers
    return out


def _size(op: _Section, key: str) -> int:
    value = op.get(key)
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # [s, s]: square, as res2net crops
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise op.error(key, f"must be a positive integer (square size), got {value!r:.80}")
    return value


def _pair(op: _Section, key: str, default: list[float]) -> list[float]:
    value = op.get(key, default)
    numbers = [_as_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != 2 or None in numbers:
        raise op.error(key, f"must be a list of 2 numbers, got {value!r:.80}")
    return numbers


def _train_ops(dataset: _Section) -> dict[str, Any]:
    """RandomResizedCrop + flip + normalize: ``data.image_size`` and its augmentation."""
    ops = _op_list(dataset, "transform_ops", _TRAIN_OPS)
    _decode(ops["DecodeImage"])
    crop = ops["RandCropImage"]
    out = {
        "image_size": _size(crop, "size"),
        # PaddleClas's RandCropImage defaults (ppcls/data/preprocess/ops/operators.py)
        "crop_scale": _pair(crop, "scale", [0.08, 1.0]),
        "crop_ratio": _pair(crop, "ratio", [3.0 / 4.0, 4.0 / 3.0]),
        "hflip": "RandFlipImage" in ops,
    }
    if "RandFlipImage" in ops:
        ops["RandFlipImage"].expect("flip_code", (1,), 1)  # 1: horizontal, as cv2.flip
    out |= _normalize(ops["NormalizeImage"])
    for op in ops.values():
        op.done()
    return out


def _eval_ops(parent: _Section, key: str) -> dict[str, Any]:
    """Short-side resize + center crop + normalize: res2net's eval preprocessing."""
    ops = _op_list(parent, key, _EVAL_OPS)
    _decode(ops["DecodeImage"])
    out = {"resize_short": _size(ops["ResizeImage"], "resize_short")}
    out["image_size"] = _size(ops["CropImage"], "size")
    out |= _normalize(ops["NormalizeImage"])
    for op in ops.values():
        op.done()
    return out


def _batch_ops(dataset: _Section) -> dict[str, float]:
    """Mixup or CutMix (one of them; PaddleClas would apply both, one after the other)."""
    out = {"mixup": 0.0, "cutmix": 0.0}
    ops = dataset.get("batch_transform_ops") or []
    names = {"MixupOperator": "mixup", "CutmixOperator": "cutmix"}
    if not isinstance(ops, list) or len(ops) > 1:
        raise dataset.error(
            "batch_transform_ops", "res2net takes one of MixupOperator, CutmixOperator"
        )
    for i, item in enumerate(ops):
        name = next(iter(item)) if isinstance(item, dict) and len(item) == 1 else None
        if name not in names:
            raise dataset.error(
                f"batch_transform_ops[{i}]",
                "operator not supported (MixupOperator, CutmixOperator)",
            )
        op = _Section(item[name], dataset.where(f"batch_transform_ops[{i}].{name}"), dataset.source)
        alpha = op.number("alpha", 1.0)  # PaddleClas's default alpha
        if alpha is None or alpha <= 0:
            raise op.error("alpha", f"must be > 0, got {alpha!r}")
        out[names[name]] = alpha
        op.done()
    return out


# ---------------------------------------------------------------------------------------------
# Sections


def _loader_parts(split: _Section) -> tuple[_Section, dict[str, Any]]:
    """A ``DataLoader.Train``/``Eval``: its dataset section, and its sampler and loader."""
    sampler, loader = split.section("sampler"), split.section("loader")
    sampler.harmless("name", "DataLoader.*.sampler.name")
    sampler.expect("name", ("DistributedBatchSampler", "BatchSampler", None))
    sampler.harmless("drop_last", "DataLoader.*.sampler.drop_last")
    train = split.path.endswith("Train")
    sampler.expect("shuffle", (train,), train)
    out = {"batch_size": sampler.integer("batch_size", 64), "num_workers": None}
    out["num_workers"] = loader.integer("num_workers")
    loader.harmless("use_shared_memory", "DataLoader.*.loader.use_shared_memory")
    sampler.done()
    loader.done()
    dataset = split.section("dataset")
    dataset.expect("name", ("ImageNetDataset",))
    dataset.expect("delimiter", (" ", None))
    split.done()
    return dataset, out


def _files(dataset: _Section) -> tuple[str, str]:
    root, labels = dataset.get("image_root"), dataset.get("cls_label_path")
    for key, value in (("image_root", root), ("cls_label_path", labels)):
        if not isinstance(value, str) or not value:
            raise dataset.error(key, f"must be a path, got {value!r:.80}")
    return root, labels


def _data_loader(section: _Section) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our ``data`` section and the train batch size from ``DataLoader``."""
    dataset, train = _loader_parts(section.section("Train"))
    data: dict[str, Any] = dict(zip(("train_dir", "train_list"), _files(dataset), strict=True))
    data |= _train_ops(dataset)
    augment = _batch_ops(dataset)
    dataset.done()
    if "Eval" in section.data:
        dataset, _ = _loader_parts(section.section("Eval"))
        data["val_dir"], data["val_list"] = _files(dataset)
        where = f"{dataset.source}: {dataset.where('transform_ops')}"
        _merge(data, _eval_ops(dataset, "transform_ops"), where)
        dataset.done()
    if train["num_workers"] is not None:
        data["num_workers"] = train["num_workers"]
    section.done()
    return data, {"augment": augment, "batch_size": train["batch_size"]}


def _merge(data: dict[str, Any], more: dict[str, Any], where: str) -> None:
    """Add eval preprocessing to ``data``; what it shares with training must agree, since
    res2net has one crop size and one mean/std for a run."""
    for key, value in more.items():
        if key in data and data[key] != value:
            raise PaddleClasConfigError(
                f"{where}: {key} {value} differs from the training ops' {data[key]}; res2net "
                "uses one image size and one mean/std for training and evaluation"
            )
        data[key] = value


def _global(g: _Section, model: dict[str, Any], out: dict[str, Any], arch: str) -> None:
    """``Global``: epochs, classes, pretrained weights, output, intervals, device, logging."""
    if g.get("checkpoints") is not None:
        raise g.error(
            "checkpoints",
            "resuming PaddleClas checkpoints is not supported; "
            "remove it (res2net train --resume continues a res2net run)",
        )
    g.harmless("checkpoints", "Global.checkpoints")
    for key in ("image_shape", "save_inference_dir", "save_interval"):
        g.harmless(key, f"Global.{key}")
    out["schedule"]["epochs"] = g.integer("epochs", out["schedule"]["epochs"])
    if "class_num" in g.data:
        model["num_classes"] = g.integer("class_num")
    pretrained = g.get("pretrained_model")
    if pretrained is not None:
        model["pretrained"] = _weights_path(g, "pretrained_model", pretrained)
    output_dir = g.get("output_dir", "./output/")
    # PaddleClas writes to output_dir/<Arch.name>/; so does res2net
    out["output"] = {"dir": str(Path(str(output_dir)) / arch)}
    out["output"]["tensorboard"] = g.expect("use_visualdl", (False, True), False)
    device = g.expect("device", ("gpu", "cpu"), "gpu")
    out["train"]["device"] = "cuda" if device == "gpu" else "cpu"
    if g.expect("eval_during_train", (True, False), True):
        out["train"]["eval_every_epochs"] = g.integer("eval_interval", 1)
    else:  # res2net always evaluates the last epoch
        g.integer("eval_interval")
        out["train"]["eval_every_epochs"] = max(1, out["schedule"]["epochs"])
    out["train"]["log_every"] = g.integer("print_batch_step", 10)
    g.expect("use_dali", (False, None))  # PaddleClas's own loader: what res2net's mirrors
    if "seed" in g.data:
        out["train"]["seed"] = g.integer("seed")
    g.done()


def _weights_path(g: _Section, key: str, value: Any) -> str:
    """PaddleClas names weights without ``.pdparams`` (it adds it); res2net takes the file."""
    if not isinstance(value, str) or "://" in value:
        raise g.error(
            key,
            f"must be a local weight file path, got {value!r:.80}; download "
            "URLs first (res2net download)",
        )
    suffix = Path(value).suffix.lower()
    return value if suffix in (".pdparams", ".safetensors", ".pth", ".pt") else f"{value}.pdparams"


def _registered(a: _Section, key: str = "name") -> str:
    from res2net.models.registry import get_entry

    name = a.get(key)
    if not isinstance(name, str):
        raise a.error(key, f"must be a model name, got {name!r:.80}")
    try:
        get_entry(name)
    except ValueError as exc:
        raise a.error(key, str(exc)) from None
    return name


def _arch(a: _Section, model: dict[str, Any], out: dict[str, Any]) -> str:
    """``Arch``: a registered name (PaddleClas's names are ours) and the class count, or a
    ``DistillationModel``; returns ``Arch.name``."""
    if a.get("name") == "DistillationModel":
        _distillation_arch(a, model, out)
        return "DistillationModel"
    model["name"] = _registered(a)
    if "class_num" in a.data:
        model["num_classes"] = a.integer("class_num")
    if a.get("pretrained") not in (None, False):
        model["pretrained"] = a.expect("pretrained", (True,))  # PaddleClas's published weights
    a.done()
    return model["name"]


def _distillation_arch(a: _Section, model: dict[str, Any], out: dict[str, Any]) -> None:
    """SSLD: a frozen Res2Net ``Teacher`` teaching a Res2Net ``Student`` (PaddleClas's
    ``DistillationModel`` with ``models: [Teacher, Student]``, ``freeze_params_list:
    [True, False]``); res2net's ``distill`` section, with the student as the model."""
    if "class_num" in a.data:
        model["num_classes"] = a.integer("class_num")
    a.expect("freeze_params_list", ([True, False],))  # only the teacher frozen
    a.expect("pretrained_list", (None,))
    a.expect("infer_model_name", ("Student", None))
    models = a.get("models")
    roles = [next(iter(m)) for m in models if _one_key(m)] if isinstance(models, list) else []
    if roles != ["Teacher", "Student"] or len(models) != 2:
        raise a.error("models", "res2net distils exactly [- Teacher: {...}, - Student: {...}]")
    nets = [
        _Section(m[role], a.where(f"models[{i}].{role}"), a.source)
        for i, (m, role) in enumerate(zip(models, ("Teacher", "Student"), strict=True))
    ]
    for net in nets:
        net.expect("class_num", (model["num_classes"], None))
    teacher, student = nets
    out["distill"] = {"teacher": _registered(teacher), "loss": "dml"}
    if teacher.expect("use_ssld", (True, False, None)):  # PaddleClas's SSLD weights
        out["distill"]["teacher"] = _registered_ssld(teacher)
    pretrained = teacher.get("pretrained")
    if pretrained is True:
        out["distill"]["teacher_weights"] = True
    elif isinstance(pretrained, str):
        out["distill"]["teacher_weights"] = _weights_path(teacher, "pretrained", pretrained)
    else:
        raise teacher.error("pretrained", "a teacher needs weights: True or a weight file path")
    model["name"] = _registered(student)
    if student.get("pretrained") not in (None, False):
        model["pretrained"] = student.expect("pretrained", (True,))
    for section in (*nets, a):
        section.done()


def _registered_ssld(teacher: _Section) -> str:
    name = f"{teacher.data['name']}_ssld"
    from res2net.models.registry import REGISTRY

    if name not in REGISTRY:
        raise teacher.error("use_ssld", f"no SSLD weights are registered for {name[:-5]}")
    return name


def _loss(section: _Section, distill: dict[str, Any] | None) -> dict[str, Any]:
    """``Loss``: one CELoss, weight 1, with optional label smoothing ``epsilon``; for a
    distillation, ``Train`` is PaddleClas's DML between Student and Teacher (weight 1), with
    an optional label loss."""
    smoothing = 0.0
    for split in ("Train", "Eval"):
        items = section.get(split)
        if split == "Eval" and items is None:
            continue
        if split == "Train" and distill is not None:
            _distillation_loss(section, distill)
            continue
        if not isinstance(items, list) or len(items) != 1 or not _one_key(items[0]):
            raise section.error(split, "res2net supports exactly one loss: - CELoss: {...}")
        name = next(iter(items[0]))
        if name != "CELoss":
            raise section.error(
                f"{split}[0].{name}",
                "loss not supported (CELoss only; "
                "for SSLD distillation use a res2net config's distill section)",
            )
        ce = _Section(items[0][name], section.where(f"{split}[0].CELoss"), section.source)
        ce.expect("weight", (1, 1.0), 1.0)
        if split == "Train":
            smoothing = ce.number("epsilon", 0.0)
        ce.done()
    section.done()
    return {"label_smoothing": smoothing}


def _distillation_loss(section: _Section, distill: dict[str, Any]) -> None:
    """``DistillationDMLLoss`` (res2net's ``dml``) between Student and Teacher, plus
    ``DistillationGTCELoss`` on the Student's labels as ``distill.hard_weight``.

    PaddleClas's DMLLoss (ppcls/loss/dmlloss.py) averages ``C * p * log(p / q)`` both ways
    over batch and classes, which is the batch mean of (KL(p||q) + KL(q||p)) / 2: ours.
    ``sum_across_class_dim`` (C times that) and ``weight_ratio`` are refused as unknown keys.
    """
    items = section.get("Train")
    if not isinstance(items, list) or not all(_one_key(i) for i in items) or not items:
        raise section.error("Train", "must be a list of - LossName: {...}")
    names = [next(iter(i)) for i in items]
    if names[0] != "DistillationDMLLoss" or names[1:] not in ([], ["DistillationGTCELoss"]):
        raise section.error(
            "Train",
            f"res2net distils with DistillationDMLLoss, optionally followed by "
            f"DistillationGTCELoss; got {names} (DistillationCELoss and others are not supported)",
        )
    dml = _Section(
        items[0][names[0]], section.where("Train[0].DistillationDMLLoss"), section.source
    )
    dml.expect("weight", (1, 1.0), 1.0)
    dml.expect("model_name_pairs", ([["Student", "Teacher"]], [("Student", "Teacher")]))
    dml.expect("act", ("softmax", None), "softmax")
    dml.done()
    if len(items) == 2:
        gt = _Section(items[1][names[1]], section.where("Train[1].DistillationGTCELoss"),
                      section.source)  # fmt: skip
        distill["hard_weight"] = gt.number("weight", 1.0)
        gt.expect("model_names", (["Student"],))
        gt.done()


def _optimizer(o: _Section) -> tuple[dict[str, Any], dict[str, Any]]:
    """``Optimizer``: Momentum with L2 and a per-iteration Cosine rate with linear warmup."""
    o.expect("name", ("Momentum",))
    optim = {"momentum": o.number("momentum", 0.9), "weight_decay": 0.0}
    optim["nesterov"] = o.expect("use_nesterov", (False, True), False)
    if "regularizer" in o.data:
        reg = o.section("regularizer")
        reg.expect("name", ("L2", "L2Decay"))  # Paddle's L2Decay adds coeff * w to the gradient
        optim["weight_decay"] = reg.number("coeff", 0.0)
        reg.done()
    lr = o.section("lr")
    if lr.get("name") != "Cosine":
        raise lr.error(
            "name",
            f"res2net's schedule is Cosine (got {lr.get('name')!r:.40}); "
            "Piecewise and others are not supported",
        )
    optim["lr"] = lr.number("learning_rate")
    if optim["lr"] is None:
        raise lr.error("learning_rate", "is required")
    schedule = {"warmup_epochs": lr.number("warmup_epoch", 0.0), "min_lr": lr.number("eta_min", 0)}
    lr.expect("warmup_start_lr", (0, 0.0), 0.0)  # res2net's warmup starts from 0
    lr.expect("by_epoch", (False,), False)  # per iteration, as res2net steps it
    lr.done()
    o.done()
    return optim, schedule


def _metric(m: _Section, distill: bool) -> None:
    """``Metric``: top-1/top-5 accuracy is what res2net reports (of the student, when
    distilling); other metrics are refused."""
    wanted = "DistillationTopkAcc" if distill else "TopkAcc"
    for split in ("Train", "Eval"):
        items = m.get(split) or []
        for i, item in enumerate(items if isinstance(items, list) else [items]):
            name = next(iter(item)) if isinstance(item, dict) and len(item) == 1 else None
            if name != wanted:
                raise m.error(f"{split}[{i}]", f"metric {item!r:.40} not supported ({wanted})")
            acc = _Section(item[name], m.where(f"{split}[{i}].{name}"), m.source)
            if distill:
                acc.expect("model_key", ("Student",))
            topk = acc.get("topk", [1, 5])
            if not isinstance(topk, list) or not all(k in (1, 5) for k in topk):
                raise acc.error("topk", f"res2net reports top-1 and top-5, got {topk!r:.40}")
            acc.done()
    m.done()


def _amp(a: _Section) -> str:
    """``AMP``: off, or O1 float16 with dynamic loss scaling (res2net's ``train.amp: fp16``)."""
    on = a.expect("use_amp", (False, True), False)
    for key in ("use_fp16_test", "scale_loss", "use_dynamic_loss_scaling", "use_promote"):
        a.get(key)  # read only with use_amp: res2net's fp16 always scales the loss dynamically
    if on:
        a.expect("level", ("O1",), "O1")
        a.expect("use_dynamic_loss_scaling", (True,), True)
        a.expect("use_fp16_test", (False, None))
    else:
        a.get("level")
    a.done()
    return "fp16" if on else "none"


def infer_settings(data: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """``Infer``: images, batch size, top-k, class-id map and its preprocessing numbers."""
    infer = _Section(data.get("Infer"), "Infer", str(source))
    out = {"images": infer.get("infer_imgs"), "batch_size": infer.integer("batch_size", 1)}
    out["preprocess"] = _eval_ops(infer, "transforms")
    post = infer.section("PostProcess")
    post.expect("name", ("Topk",))
    out["topk"] = post.integer("topk", 1)
    labels = post.get("class_id_map_file")
    if labels is not None and not isinstance(labels, str):
        raise post.error("class_id_map_file", f"must be a file path, got {labels!r:.80}")
    out["labels"] = labels
    post.expect("delimiter", (" ", None))
    post.done()
    infer.done()
    return out


# ---------------------------------------------------------------------------------------------
# The whole file


def paddleclas_to_dict(data: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """Our config's nested dicts from a PaddleClas config read by :func:`read_paddleclas_config`.

    Raises :class:`PaddleClasConfigError` naming the path of the first key, op or value that
    res2net does not support.
    """
    root = _Section(data, "", str(source))
    out: dict[str, Any] = {"model": {"num_classes": 1000}, "schedule": {"epochs": 200}}
    out["train"] = {}
    arch = _arch(root.section("Arch"), out["model"], out)
    arch_classes = out["model"]["num_classes"]
    _global(root.section("Global"), out["model"], out, arch)
    if "class_num" in data.get("Arch", {}) and out["model"]["num_classes"] != arch_classes:
        raise root.error("Global.class_num", f"differs from Arch.class_num ({arch_classes})")
    out["loss"] = _loss(root.section("Loss"), out.get("distill"))
    out["optim"], schedule = _optimizer(root.section("Optimizer"))
    out["schedule"] |= schedule
    out["data"], loader = _data_loader(root.section("DataLoader"))
    out["augment"], out["train"]["batch_size"] = loader["augment"], loader["batch_size"]
    if "Metric" in data:
        _metric(root.section("Metric"), "distill" in out)
    out["train"]["amp"] = _amp(root.section("AMP"))
    if "Infer" in data:  # checked here, used by `res2net predict --config`
        infer_settings(data, source)
        root.get("Infer")
    root.done()
    return out


def load_any_config(
    path: str | Path, overrides: list[str] | tuple = (), options: list[str] | tuple = ()
) -> Config:
    """A training config from our YAML or PaddleClas's (recognised by its sections).

    :param overrides: our ``dotted.key=value`` overrides, applied last, to either format.
    :param options: PaddleClas's ``-o Section.key=value`` overrides (PaddleClas files only).
    """
    data = read_config_file(path)
    if is_paddleclas_config(data):
        data = paddleclas_to_dict(read_paddleclas_config(path, options), path)
    elif options:
        raise ConfigError(
            f"{path}: options= (-o) take PaddleClas keys, but this is a res2net config; "
            "override its keys as key=value"
        )
    return config_from_data(data, overrides, path)


def _matches_model(name: str, weights: str | None, preprocess: dict[str, Any], where: str) -> None:
    """Eval/predict feed a model its own preprocessing (a ``res2net train`` export's, else the
    registered model's); a config asking for another is refused, naming the section, rather
    than silently not followed."""
    from res2net.card import training_card
    from res2net.models.registry import get_entry

    card = training_card(weights) if weights and Path(weights).is_file() else None
    own = card.preprocess if card is not None else get_entry(name).preprocess
    wanted = (preprocess["resize_short"], preprocess["image_size"])
    if wanted != (own.resize_short, own.crop) or not all(
        _close_all(preprocess[k], getattr(own, k)) for k in ("mean", "std")
    ):
        raise PaddleClasConfigError(
            f"{where}: resize {wanted[0]}, crop {wanted[1]}, mean {preprocess['mean']}, std "
            f"{preprocess['std']} differ from the model's own eval preprocessing (resize "
            f"{own.resize_short}, crop {own.crop}, mean {list(own.mean)}, std {list(own.std)}), "
            "which res2net always applies; use those values"
        )


def _close_all(a: list[float], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def _model_and_weights(cfg: dict[str, Any]) -> dict[str, Any]:
    pretrained = cfg["model"].get("pretrained", False)
    return {
        "name": cfg["model"]["name"],
        "num_classes": cfg["model"]["num_classes"],
        "weights": pretrained if isinstance(pretrained, str) else None,
        "pretrained": pretrained is True,
        "device": cfg["train"]["device"],
    }


def paddleclas_eval_settings(path: str | Path, options: list[str] | tuple = ()) -> dict[str, Any]:
    """What PaddleClas's ``tools/eval.py -c path -o ...`` evaluates: ``Arch.name`` with
    ``Global.pretrained_model`` (or ``Arch.pretrained``) on ``DataLoader.Eval``'s dataset,
    batch size and workers. The whole file is checked as for training."""
    data = read_paddleclas_config(path, options)
    cfg = paddleclas_to_dict(data, path)
    if "Eval" not in data["DataLoader"]:
        raise PaddleClasConfigError(f"{path}: DataLoader.Eval: missing; evaluation needs it")
    out = _model_and_weights(cfg)
    where = f"{path}: DataLoader.Eval.dataset.transform_ops"
    _matches_model(out["name"], out["weights"], cfg["data"], where)
    split = data["DataLoader"]["Eval"]
    out |= {"data": cfg["data"]["val_dir"], "list_file": cfg["data"]["val_list"]}
    out["batch_size"] = (split.get("sampler") or {}).get("batch_size", 64)
    out["num_workers"] = (split.get("loader") or {}).get("num_workers", 0)
    return out


def paddleclas_predict_settings(
    path: str | Path, options: list[str] | tuple = ()
) -> dict[str, Any]:
    """What PaddleClas's ``tools/infer.py -c path -o ...`` runs: ``Arch.name`` with its
    weights on ``Infer.infer_imgs``, with ``Infer.batch_size`` and ``PostProcess``'s
    ``topk`` and ``class_id_map_file``. The whole file is checked as for training."""
    data = read_paddleclas_config(path, options)
    cfg = paddleclas_to_dict(data, path)
    if "Infer" not in data:
        raise PaddleClasConfigError(f"{path}: Infer: missing; prediction needs it")
    infer = infer_settings(data, path)
    out = _model_and_weights(cfg)
    _matches_model(out["name"], out["weights"], infer["preprocess"], f"{path}: Infer.transforms")
    out |= {k: infer[k] for k in ("images", "batch_size", "topk", "labels")}
    return out
