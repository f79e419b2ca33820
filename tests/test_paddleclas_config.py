"""PaddleClas's own Res2Net training YAMLs, as PaddleClas ships them, train here.

The five configs in tests/data/paddleclas_configs/ are PaddleClas's files, unchanged. They must
map to exactly the recipe of our hand translations in configs/, and what we read from them
(with PaddleClas's ``-o`` overrides) must be what PaddleClas's own loader,
``ppcls.utils.config.get_config`` in the reference venv, reads.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import re
from contextlib import redirect_stdout, suppress
from pathlib import Path

import pytest
from conftest import PHOTOS, ROOT, run_reference
from safetensors.torch import load_file

from res2net.cli import main as cli_main
from res2net.engine.config import ConfigError, config_from_data, config_to_dict, load_config
from res2net.engine.paddleclas_config import (
    PaddleClasConfigError,
    load_any_config,
    paddleclas_to_dict,
    read_paddleclas_config,
)

PADDLE_CONFIGS = ROOT / "tests" / "data" / "paddleclas_configs"
NAMES = sorted(p.stem for p in PADDLE_CONFIGS.glob("*.yaml"))
# What a recipe is: everything that changes what is learnt. Paths, workers, logging, the
# output folder and the AMP/layout speed settings are the machine's, not the recipe's.
RECIPE = {
    "model": ("name", "num_classes", "pretrained"),
    "data": ("image_size", "resize_short", "crop_scale", "crop_ratio", "hflip", "mean", "std"),
    "optim": ("lr", "momentum", "weight_decay", "nesterov"),
    "schedule": ("epochs", "warmup_epochs", "min_lr"),
    "loss": ("label_smoothing",),
    "augment": ("mixup", "cutmix", "cutmix_prob"),
    "train": ("batch_size",),
}
OPTIONS = [
    "Global.epochs=2",
    "DataLoader.Train.sampler.batch_size=32",
    "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=192",
    "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=192",
    "Optimizer.lr.learning_rate=0.05",
    "Optimizer.lr.warmup_epoch=5",
    "Loss.Train.0.CELoss.epsilon=0.2",
    "Global.device=cpu",
    "Global.output_dir=/tmp/somewhere",
]


def _recipe(cfg) -> dict:
    d = config_to_dict(cfg)
    return {f"{s}.{k}": d[s][k] for s, keys in RECIPE.items() for k in keys}


def _close(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


@pytest.fixture(scope="module")
def paddle_read(tmp_path_factory) -> dict:
    """PaddleClas's own reading of each config, plain and with OPTIONS."""
    requests = [{"path": str(PADDLE_CONFIGS / f"{n}.yaml"), "options": []} for n in NAMES]
    requests += [{"path": str(PADDLE_CONFIGS / f"{n}.yaml"), "options": OPTIONS} for n in NAMES]
    spec = tmp_path_factory.mktemp("pcfg") / "requests.json"
    spec.write_text(json.dumps(requests))
    read = json.loads(run_reference("paddleclas_config.py", spec).strip().splitlines()[-1])
    n = len(NAMES)
    return {
        "plain": dict(zip(NAMES, read[:n], strict=True)),
        "o": dict(zip(NAMES, read[n:], strict=True)),
    }


@pytest.mark.parametrize("name", NAMES)
def test_paddleclas_config_maps_to_our_recipe_field_by_field(name):
    ours = _recipe(load_config(ROOT / "configs" / f"{name}.yaml"))
    mapped = _recipe(load_any_config(PADDLE_CONFIGS / f"{name}.yaml"))
    assert mapped.keys() == ours.keys()
    for key in ours:
        assert _close(mapped[key], ours[key]), (key, mapped[key], ours[key])


@pytest.mark.parametrize("name", NAMES)
def test_we_read_what_paddleclas_reads_including_its_overrides(paddle_read, name):
    path = PADDLE_CONFIGS / f"{name}.yaml"
    assert read_paddleclas_config(path) == paddle_read["plain"][name]
    assert read_paddleclas_config(path, OPTIONS) == paddle_read["o"][name]
    # and the dict PaddleClas hands its engine maps to the config we train with
    from_paddle = config_from_data(paddleclas_to_dict(paddle_read["o"][name], path))
    cfg = load_any_config(path, options=OPTIONS)
    assert config_to_dict(cfg) == config_to_dict(from_paddle)
    assert (cfg.schedule.epochs, cfg.train.batch_size, cfg.data.image_size) == (2, 32, 192)
    assert (cfg.optim.lr, cfg.schedule.warmup_epochs, cfg.loss.label_smoothing) == (0.05, 5, 0.2)
    assert cfg.train.device == "cpu"
    assert cfg.output.dir == f"/tmp/somewhere/{name}"  # PaddleClas's output_dir/<Arch.name>


@pytest.mark.parametrize(
    ("option", "path"),
    [
        ("Global.to_static=True", "Global.to_static"),
        ("Global.device=xpu", "Global.device"),
        ("DataLoader.Train.dataset.transform_ops.2={'AutoAugment': None}",
         "DataLoader.Train.dataset.transform_ops[2].AutoAugment"),
        ("DataLoader.Train.dataset.transform_ops.1.RandCropImage.interpolation=bicubic",
         "DataLoader.Train.dataset.transform_ops[1].RandCropImage.interpolation"),
        ("Optimizer.lr.name=Piecewise", "Optimizer.lr.name"),
        ("Optimizer.name=AdamW", "Optimizer.name"),
        ("Loss.Train.0={'FocalLoss': None}", "Loss.Train[0].FocalLoss"),
        ("DataLoader.Eval.dataset.transform_ops.2.CropImage.size=256",
         "DataLoader.Eval.dataset.transform_ops"),
        ("Arch.name=ResNet50", "Arch.name"),
        ("Global.checkpoints=output/epoch_5", "Global.checkpoints"),
        ("Metric.Eval.0={'mAP': None}", "Metric.Eval[0]"),
    ],
)  # fmt: skip
def test_unsupported_key_or_op_is_named_with_its_path(option, path, capsys):
    config = PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml"
    with pytest.raises(PaddleClasConfigError, match=re.escape(f"{config}: {path}")):
        load_any_config(config, options=[option])
    code = cli_main(["train", "--config", str(config), "-o", option])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("res2net train: error: ")
    assert path in err[0]


SIZE_16 = [
    "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=16",
    "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=16",
    "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=16",
    "Infer.transforms.1.ResizeImage.resize_short=16",
    "Infer.transforms.2.CropImage.size=16",
]


def _flags(options: list[str]) -> list[str]:
    return [a for o in options for a in ("-o", o)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """Res2Net50_vd_26w_4s itself, from PaddleClas's file, on six photos at 16x16, two
    classes, one epoch (about 30 s on two CPU cores)."""
    tmp = tmp_path_factory.mktemp("pcfg_run")
    lines = [f"{p.name} {i % 2}" for i, p in enumerate(PHOTOS[:6])]
    (tmp / "list.txt").write_text("\n".join(lines) + "\n")
    root, listing = PHOTOS[0].parent, tmp / "list.txt"
    options = [
        "Global.device=cpu", "Global.class_num=2",
        "DataLoader.Train.loader.num_workers=0", "DataLoader.Eval.loader.num_workers=0",
        *SIZE_16,
    ]  # fmt: skip
    for split in ("Train", "Eval"):
        options += [f"DataLoader.{split}.dataset.image_root={root}"]
        options += [f"DataLoader.{split}.dataset.cls_label_path={listing}"]
    train_only = [
        "Global.epochs=1", f"Global.output_dir={tmp / 'out'}",
        "DataLoader.Train.sampler.batch_size=3",
    ]  # fmt: skip
    args = ["train", "--config", str(PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml"), "--json"]
    args += _flags(options + train_only) + ["output.plot=false", "train.progress=false"]
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(args)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"code": code, "weights": Path(result["final_weights"]), "out": tmp / "out",
            "options": options, "root": root, "list": listing, "tmp": tmp}  # fmt: skip


def test_one_epoch_from_a_paddleclas_config_trains_and_writes_its_weights(tiny_run):
    assert tiny_run["code"] == 0
    weights = tiny_run["weights"]
    assert weights.parent == tiny_run["out"] / "Res2Net50_vd_26w_4s"  # output_dir/<Arch.name>
    state = load_file(weights)
    assert state["fc.weight"].shape == (2, 2048)
    # From scratch every block's last BN scale starts at 0: two SGD steps moved them.
    assert any(v.abs().sum() > 0 for k, v in state.items() if k.endswith("bn3.weight"))


def _json_of(args: list[str], capsys) -> dict:
    assert cli_main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_config_uses_the_eval_section_and_pretrained_model(tiny_run, capsys):
    weights, config = tiny_run["weights"], PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml"
    # PaddleClas's pretrained_model is a path without .pdparams; ours takes the file itself
    options = [*tiny_run["options"], f"Global.pretrained_model={weights}"]
    by_config = _json_of(["eval", "--config", str(config), "--json", *_flags(options)], capsys)
    by_flags = _json_of(
        ["eval", "--model", "Res2Net50_vd_26w_4s", "--weights", str(weights), "--json",
         "--data", str(tiny_run["root"]), "--list", str(tiny_run["list"]), "--workers", "0"],
        capsys,
    )  # fmt: skip
    assert by_config == by_flags and by_config["images"] == 6


def test_predict_config_uses_infer_topk_and_class_id_map(tiny_run, capsys):
    weights, config = tiny_run["weights"], PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml"
    labels = tiny_run["tmp"] / "labels.txt"
    labels.write_text("0 even photo\n1 odd photo\n")  # PaddleClas's "id name" map
    options = [
        *tiny_run["options"], f"Global.pretrained_model={weights}",
        f"Infer.infer_imgs={PHOTOS[0]}", "Infer.PostProcess.topk=1",
        f"Infer.PostProcess.class_id_map_file={labels}",
    ]  # fmt: skip
    doc = _json_of(["predict", "--config", str(config), "--json", *_flags(options)], capsys)
    (pred,) = doc["predictions"]
    assert len(pred["class_ids"]) == 1 and pred["labels"][0] in ("even photo", "odd photo")
    # a flag given explicitly wins over the config
    doc = _json_of(["predict", "--config", str(config), "--json", "--topk", "2",
                    *_flags(options)], capsys)  # fmt: skip
    assert len(doc["predictions"][0]["class_ids"]) == 2


def test_eval_config_refuses_preprocessing_the_model_does_not_use(tiny_run, capsys):
    config = PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml"
    options = [*tiny_run["options"], f"Global.pretrained_model={tiny_run['weights']}"]
    options += ["DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=20"]
    assert cli_main(["eval", "--config", str(config), *_flags(options)]) == 2
    err = capsys.readouterr().err
    assert "DataLoader.Eval.dataset.transform_ops: resize 20, crop 16" in err


def _paths(node, path=()):
    yield path
    if isinstance(node, (dict, list)):
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            yield from _paths(value, (*path, key))


def test_malformed_values_anywhere_are_named_errors_never_a_traceback():
    """Every value of a shipped file, swapped for a value of another shape or range (up to
    three at once, 1500 seeded draws), is a ConfigError, as the CLI reports in one line."""
    base = read_paddleclas_config(PADDLE_CONFIGS / "Res2Net50_14w_8s.yaml")
    paths = [p for p in _paths(base) if p]
    odd = [None, 5, -1, 0, "x", [], {}, [None], {"a": 1}, True, 1.5, "1/0", [1, 2, 3]]
    rng = random.Random(0)
    for _ in range(1500):
        data = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(paths)
            node = data
            try:
                for key in parents:
                    node = node[key]
                node[last] = rng.choice(odd)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier swap removed this path
        with suppress(ConfigError):
            config_from_data(paddleclas_to_dict(data, "f.yaml"))


DISTILLATION = PADDLE_CONFIGS / "distillation" / "res2net200_vd_distill_pphgnet_base.yaml"


def test_paddleclas_ssld_recipe_with_a_student_we_lack_is_refused_by_name():
    with pytest.raises(PaddleClasConfigError, match=r"Arch\.models\[1\]\.Student\.name"):
        load_any_config(DISTILLATION)
    options = ["Arch.models.1.Student.name=Res2Net50_vd_26w_4s"]
    with pytest.raises(PaddleClasConfigError, match=r"Loss\.Train: .*DistillationCELoss"):
        load_any_config(DISTILLATION, options=options)


def test_distillation_model_with_dml_maps_to_our_distill_section(tmp_path):
    """PaddleClas's DistillationModel layout (as in its SSLD configs), with two Res2Nets
    and DML plus a label loss: res2net's distill section, the student as the model."""
    data = read_paddleclas_config(PADDLE_CONFIGS / "Res2Net50_vd_26w_4s.yaml")
    data["Arch"] = {
        "name": "DistillationModel", "class_num": 1000, "pretrained_list": None,
        "freeze_params_list": [True, False], "infer_model_name": "Student",
        "models": [
            {"Teacher": {"name": "Res2Net200_vd_26w_4s", "class_num": 1000,
                         "pretrained": True, "use_ssld": True}},
            {"Student": {"name": "Res2Net50_vd_26w_4s", "class_num": 1000,
                         "pretrained": False}},
        ],
    }  # fmt: skip
    data["Loss"]["Train"] = [
        {"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}},
        {"DistillationGTCELoss": {"weight": 0.5, "model_names": ["Student"]}},
    ]
    data["Metric"] = {"Eval": [{"DistillationTopkAcc": {"model_key": "Student", "topk": [1, 5]}}]}
    del data["Global"]["class_num"]
    cfg = config_from_data(paddleclas_to_dict(data, "ssld.yaml"))
    assert cfg.model.name == "Res2Net50_vd_26w_4s" and cfg.model.num_classes == 1000
    d = cfg.distill
    assert (d.teacher, d.teacher_weights, d.loss, d.hard_weight) == (
        "Res2Net200_vd_26w_4s_ssld",
        True,
        "dml",
        0.5,
    )
    assert cfg.output.dir == "output/DistillationModel"  # where PaddleClas writes it
    data["Arch"]["freeze_params_list"] = [True, True]
    with pytest.raises(PaddleClasConfigError, match=r"Arch\.freeze_params_list"):
        paddleclas_to_dict(data, "ssld.yaml")
