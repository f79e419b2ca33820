"""The model card: one JSON form, written by training and export and read back by load_card."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from conftest import tiny_config
from safetensors import safe_open

from res2net.card import CardError, ModelCard, card_of, load_card
from res2net.cli import main as cli_main
from res2net.data.datasets import folder_samples, render_digits
from res2net.data.preprocess import Preprocess
from res2net.engine.config import config_from_dict
from res2net.models.config import Res2NetConfig
from res2net.models.registry import REGISTRY, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_registry_entry_round_trips_through_json(name):
    entry = REGISTRY[name]
    card = load_card(name)
    # The card says what the registry says (checked field by field, not against itself).
    assert (card.name, card.config, card.family) == (entry.name, entry.config, entry.family)
    assert card.preprocess == entry.preprocess and card.published == entry.published
    assert (card.weights.url, card.weights.sha256) == (entry.url, entry.sha256)
    assert card.weights.format == entry.url.rsplit(".", 1)[-1]
    data = json.loads(json.dumps(card.to_dict()))
    assert data["arch"] == asdict(entry.config)
    assert data["preprocess"]["interpolation"] == entry.preprocess.interpolation
    assert ModelCard.from_dict(data) == card


GOOD = {
    "arch": {"depth": 50, "width": 4, "scales": 4},
    "num_classes": 3,
    "preprocess": {"resize_short": 64, "crop": 56, "mean": [0.5] * 3, "std": [0.5] * 3},
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"colour": 1}, "unknown key(s) 'colour'"),
        ({"num_classes": 0}, "card.num_classes = 0"),
        ({"labels": ["a", "b"]}, "card.labels: must be a list of 3 names"),
        ({"arch": {"depth": 51}}, "card.arch: not a valid Res2Net (depth must be one of"),
        ({"arch": {"width": 10**6}}, "card.arch.width = 1000000"),
        ({"arch": {"deep_stem": 1}}, "card.arch.deep_stem = 1"),
        ({"preprocess": dict(GOOD["preprocess"], style="cv2")}, "card.preprocess.style"),
        ({"preprocess": dict(GOOD["preprocess"], crop="56")}, "card.preprocess.crop = '56'"),
        ({"preprocess": {"crop": 5, "resize_short": 5}}, "card.preprocess.mean = None"),
        ({"precision": "fp8"}, "card.precision = 'fp8'"),
        ({"weights": {"url": 3}}, "card.weights"),
    ],
)
def test_bad_card_names_the_key(change, named):
    assert ModelCard.from_dict(GOOD).config == Res2NetConfig(50, 4, 4)
    with pytest.raises(CardError) as err:
        ModelCard.from_dict({**GOOD, **change})
    assert named in str(err.value)


def test_missing_and_non_object_records_are_named():
    with pytest.raises(CardError, match="missing key.s. preprocess"):
        ModelCard.from_dict({k: v for k, v in GOOD.items() if k != "preprocess"})
    with pytest.raises(CardError, match="must be a JSON object, not list"):
        ModelCard.from_dict([GOOD])
    with pytest.raises(ValueError, match="unknown model 'Res2Net50_vd_26w_5s'.*Did you mean"):
        load_card("Res2Net50_vd_26w_5s")


def _tiny_run(tmp_path, **data):
    """A one-epoch training run of the tiny net on the digits (validated on 40 of them);
    returns (config, weights)."""
    from res2net.engine.train import train

    digits = tmp_path / "digits"
    render_digits(digits, size=16)
    samples, _ = folder_samples(digits / "val")
    listing = digits / "few.txt"
    picked = [samples[i] for i in range(0, len(samples), len(samples) // 40)][:40]
    listing.write_text("".join(f"{p.relative_to(digits / 'val')} {c}\n" for p, c in picked))
    cfg = config_from_dict(
        tiny_config(
            digits,
            tmp_path / "run",
            data={"val_list": str(listing), **data},
            schedule={"epochs": 1, "warmup_epochs": 0},
            output={"tensorboard": False, "plot": False},
        )
    )
    return cfg, train(cfg).final_weights


def test_training_and_onnx_exports_carry_the_same_card(tmp_path, capsys):
    cfg, weights = _tiny_run(tmp_path, resize_short=20, mean=[0.4, 0.5, 0.6])
    trained = load_card(weights)
    # What the run was configured with, read back from the file's own header.
    assert trained.config == Res2NetConfig(**tiny_config(tmp_path, tmp_path)["model"]["arch"])
    assert trained.num_classes == 10 and trained.labels == tuple(str(d) for d in range(10))
    assert trained.preprocess == Preprocess(20, 16, "bilinear", (0.4, 0.5, 0.6), (0.5,) * 3)
    assert trained.weights.path == str(weights)
    onnx = tmp_path / "tiny.onnx"
    code = cli_main(
        ["export", "--weights", str(weights), "--format", "onnx", "--output", str(onnx)]
    )
    assert code == 0, capsys.readouterr().err
    exported = load_card(onnx)
    assert exported.config == trained.config and exported.num_classes == trained.num_classes
    assert exported.preprocess == trained.preprocess and exported.labels == trained.labels
    assert exported.precision == "fp32"
    # The JSON beside the model is what the C++ predictor reads: its keys stay.
    meta = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert {"model", "num_classes", "preprocess", "labels", "files", "format"} <= set(meta)


def test_training_metadata_records_the_whole_eval_preprocessing(tmp_path):
    from res2net.engine.train import _metadata

    cfg = config_from_dict(
        tiny_config(tmp_path, tmp_path, data={"image_size": 48, "resize_short": 60})
    )
    record = json.loads(_metadata(cfg, None)["res2net_training"])
    # Training validates with PaddleClas's resize (ppcls ResizeImage: cv2 INTER_LINEAR).
    assert record["preprocess"] == {
        "resize_short": 60,
        "crop": 48,
        "interpolation": "bilinear",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "style": "paddle",
    }
    # A registered name records its architecture and family from the registry.
    named = config_from_dict(
        tiny_config(tmp_path, tmp_path, model={"arch": None, "name": "res2net50d"})
    )
    card = ModelCard.from_dict(json.loads(_metadata(named, None)["res2net_training"]))
    assert card.config == REGISTRY["res2net50d"].config and card.family == "official"


def test_old_training_metadata_still_reads(tmp_path):
    """What earlier versions wrote: ``classes`` and no interpolation / style."""
    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net

    old = {**GOOD, "model": None, "classes": ["ant", "bee", "cat"]}
    net = Res2Net(Res2NetConfig(**GOOD["arch"]), num_classes=3)
    path = export_weights(net, tmp_path / "old.safetensors", {"res2net_training": json.dumps(old)})
    with safe_open(str(path), framework="np") as fh:
        assert "interpolation" not in fh.metadata()["res2net_training"]
    card = load_card(path)
    assert card.labels == ("ant", "bee", "cat") and card.preprocess.style == "paddle"
    assert card == ModelCard.from_dict(card.to_dict())
    assert card_of(REGISTRY["res2net50d"]).preprocess.style == "timm"
