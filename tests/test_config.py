"""Training configs: schema errors, overrides, the shipped recipes, schedule, datasets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from PIL import Image
from torchvision.transforms import ToTensor

from res2net.data.datasets import (
    CorruptImageError,
    build_dataset,
    collate_skipping,
    folder_samples,
    list_file_samples,
)
from res2net.engine.config import ConfigError, config_from_dict, load_config
from res2net.engine.train import lr_at

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
PADDLE_NETWORKS = [
    "Res2Net50_26w_4s",
    "Res2Net50_14w_8s",
    "Res2Net50_vd_26w_4s",
    "Res2Net101_vd_26w_4s",
    "Res2Net200_vd_26w_4s",
]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"model": {"name": "Res2Net50_26w_4s"}, "optim": {"lrr": 0.1}}, "optim.lrr", "lr"),
        ({"model": {"name": "Res2Net50_26w_4s"}, "optimm": {"lr": 0.1}}, "optimm", "optim"),
        ({"model": {"arch": {"dept": 50}}}, "model.arch.dept", "depth"),
        ({"model": {"name": "x"}, "train": {"batch_sise": 8}}, "train.batch_sise", "batch_size"),
    ],
)
def test_unknown_key_names_key_and_closest(tmp_path, data, key, suggestion):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    assert repr(key) in str(err.value)
    assert f"did you mean {suggestion!r}" in str(err.value)


def test_overrides_use_dotted_paths_and_yaml_values(tmp_path):
    path = _write(tmp_path, {"model": {"name": "Res2Net50_26w_4s"}})
    cfg = load_config(path, ["optim.lr=0.05", "train.amp=bf16", "data.crop_scale=[0.5, 1]"])
    assert cfg.optim.lr == 0.05
    assert cfg.train.amp == "bf16"
    assert cfg.data.crop_scale == (0.5, 1.0)
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(path, ["optim.lrate=0.05"])


def test_wrong_types_and_choices_are_errors():
    base = {"model": {"name": "Res2Net50_26w_4s"}}
    with pytest.raises(ConfigError, match="'optim.lr' must be float"):
        config_from_dict({**base, "optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="'train.amp' must be one of"):
        config_from_dict({**base, "train": {"amp": "fp8"}})
    with pytest.raises(ConfigError, match="exactly one of 'name'"):
        config_from_dict({"model": {}})


def test_arch_section_is_the_networks_own_config():
    from res2net.models.res2net import Res2NetConfig

    arch = {"depth": 50, "width": 4, "scales": 4, "cardinality": 2, "flavour": "official"}
    cfg = config_from_dict({"model": {"arch": arch}})
    assert cfg.model.arch == Res2NetConfig(**arch)  # every field, cardinality included
    with pytest.raises(ConfigError, match="'model.arch.flavour' must be one of"):
        config_from_dict({"model": {"arch": {**arch, "flavour": "timm"}}})
    with pytest.raises(ConfigError, match="'model.arch'.*depth must be one of"):
        config_from_dict({"model": {"arch": {**arch, "depth": 34}}})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


@pytest.mark.parametrize("name", PADDLE_NETWORKS)
def test_imagenet_configs_carry_paddleclas_recipe(name):
    # Figures of PaddleClas 2.6's ppcls/configs/ImageNet/Res2Net/*.yaml.
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.model.name == name and cfg.model.num_classes == 1000
    assert cfg.schedule.epochs == 200 and cfg.schedule.warmup_epochs == 0
    assert cfg.schedule.min_lr == 0
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.1, 0.9, 1e-4)
    assert cfg.loss.label_smoothing == 0.1 and cfg.augment.mixup == 0.2
    assert cfg.train.batch_size == 64
    assert cfg.data.image_size == 224 and cfg.data.resize_short == 256
    assert cfg.data.crop_scale == (0.08, 1.0) and cfg.data.hflip


def test_cosine_schedule_per_iteration_with_warmup():
    cfg = config_from_dict({"model": {"name": "x"}, "schedule": {"epochs": 10}})
    total = 1000
    assert lr_at(0, total, cfg, 100) == pytest.approx(0.1)
    assert lr_at(500, total, cfg, 100) == pytest.approx(0.05)
    assert lr_at(250, total, cfg, 100) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert lr_at(total, total, cfg, 100) == pytest.approx(0.0)
    warm = config_from_dict({"model": {"name": "x"}, "schedule": {"warmup_epochs": 1}})
    assert lr_at(0, total, warm, 100) == pytest.approx(0.001)
    assert lr_at(99, total, warm, 100) == pytest.approx(0.1)
    assert lr_at(100, total, warm, 100) == pytest.approx(0.1)


def _images(root: Path) -> None:
    for cls, color in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), color).save(root / cls / f"{i}.png")


def test_image_folder_and_paddle_list_file_agree(tmp_path):
    _images(tmp_path)
    samples, classes = folder_samples(tmp_path)
    assert classes == ["cat", "dog"] and [s[1] for s in samples] == [0, 0, 1, 1]
    listing = tmp_path / "list.txt"
    listing.write_text("cat/0.png 0\ncat/1.png 0\ndog/0.png 1\ndog/1.png 1\n")
    assert list_file_samples(listing, tmp_path) == samples
    listing.write_text("cat/0.png zero\n")
    with pytest.raises(ValueError, match=r"list.txt:1: expected 'relative/path label'"):
        list_file_samples(listing, tmp_path)


def test_corrupt_image_is_skipped_and_counted_or_fails(tmp_path):
    _images(tmp_path)
    bad = tmp_path / "dog" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    to_tensor = ToTensor()
    dataset = build_dataset(tmp_path, to_tensor)
    with pytest.warns(UserWarning, match="skipping corrupt image"):
        batch = [dataset[i] for i in range(len(dataset))]
    images, labels, skipped = collate_skipping(batch)
    assert skipped == 1 and images.shape[0] == 4 and labels.tolist() == [0, 0, 1, 1]
    strict = build_dataset(tmp_path, to_tensor, on_corrupt="fail")
    with pytest.raises(CorruptImageError, match="2.png"):
        strict[4]


# -- every number range-checked where it is read -------------------------------------------


@pytest.mark.parametrize(
    "override,key",
    [("optim.lr=.nan", "optim.lr"),  # trained and exported 263 NaN tensors, exit 0
     ("schedule.epochs=-1", "schedule.epochs"),  # exported untrained weights, exit 0
     ("train.log_every=0", "train.log_every"),  # ZeroDivisionError traceback
     ("train.eval_every_epochs=0", "train.eval_every_epochs"),  # same
     ("schedule.warmup_epochs=.inf", "schedule.warmup_epochs"),  # OverflowError traceback
     ("data.std=[0.5, 0, 0.5]", "data.std"), ("data.crop_scale=[1.0, 0.5]", "data.crop_scale"),
     ("model.num_classes=-3", "model.num_classes"), ("train.batch_size=1.5", "train.batch_size"),
     ("loss.label_smoothing=2", "loss.label_smoothing"), ("optim.momentum=-.inf", "optim.momentum"),
     ("optim.lr=1" + "0" * 400, "optim.lr"),  # an int too large for a float: OverflowError
     ("model.arch={depth: 50, width: -1}", "model.arch.width"), ("output.dir=' '", "output.dir"),
     # 2.3 billion parameters at depth 200: a memory bomb in one line of config
     ("model.arch={depth: 200, width: 128, scales: 8}", "model.arch")],
)  # fmt: skip
def test_bad_numbers_are_config_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}"):
        base = [] if override.startswith("model.arch") else ["model.name=Res2Net50_26w_4s"]
        load_config(None, [*base, override])


@pytest.mark.parametrize("where", ["/dev/null", "{file}/run"])
def test_output_dir_that_cannot_be_a_folder_is_exit_2(tmp_path, where, capsys):
    from res2net.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = _write(tmp_path, {"model": {"name": "Res2Net50_26w_4s"}})
    override = f"output.dir={where.format(file=blocker)}"
    assert main(["train", "--config", str(config), override]) == 2  # was a traceback
    err = capsys.readouterr().err
    assert "config key 'output.dir'" in err and "Traceback" not in err
