"""``.pdparams`` written back for PaddleClas: loaded by ``paddle.load`` into PaddleClas's own
network (``.venv-ref``), whose logits must equal ours, and by our own reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_logits_match, run_reference, tiny_config

from res2net.builder import build_model, create_model
from res2net.card import load_card
from res2net.cli import main
from res2net.weights.io import load_weights, save_safetensors
from res2net.weights.paddle import LEGACY_NAMES_KEY, paddle_names, read_pdparams

VD50 = "Res2Net50_vd_26w_4s"
PLAIN50 = "Res2Net50_26w_4s"


def _logits(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(batch).numpy()


def _paddleclas_logits(name, pdparams, photo_batch, tmp_path) -> np.ndarray:
    out = tmp_path / "paddle_logits.npy"
    run_reference("paddle_load_logits.py", name, pdparams, photo_batch[1], out)
    return np.load(out)


def _one_sgd_step(model: torch.nn.Module, batch: torch.Tensor) -> None:
    """Change every weight and every BN statistic, so the file is not a converted one."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    labels = torch.arange(len(batch)) % model.fc.out_features
    torch.nn.functional.cross_entropy(model(batch), labels).backward()
    optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def trained_export(paddle_reference, tmp_path_factory):
    """A res2net train run of a registered PaddleClas architecture on the digits, started
    from PaddleClas's randomized weights with a new 10-class head: its final .safetensors."""
    from res2net.data.datasets import render_digits
    from res2net.engine.config import config_from_dict
    from res2net.engine.train import train

    tmp = tmp_path_factory.mktemp("pdparams_train")
    render_digits(tmp / "digits")
    weights, _ = paddle_reference(VD50)
    cfg = tiny_config(
        tmp / "digits",
        tmp / "run",
        model={"name": VD50, "arch": None, "num_classes": 10, "pretrained": str(weights)},
        data={"image_size": 32, "resize_short": 32, "val_dir": str(tmp / "digits" / "val")},
        train={"batch_size": 8, "max_steps": 2},
        output={"tensorboard": False, "plot": False},
    )
    return train(config_from_dict(cfg)).final_weights


def test_trained_fine_tuned_model_loads_in_paddleclas(trained_export, photo_batch, tmp_path):
    out = tmp_path / "trained.pdparams"
    # No --model: the training export carries its architecture and its 10-class head.
    assert main(["convert", str(trained_export), str(out)]) == 0
    ours = build_model(load_card(trained_export))
    assert ours.fc.out_features == 10
    paddle_logits = _paddleclas_logits(VD50, out, photo_batch, tmp_path)
    assert paddle_logits.shape[1] == 10
    assert_logits_match(_logits(ours, photo_batch[0]), paddle_logits)


@pytest.mark.parametrize("name", [PLAIN50, VD50])
def test_perturbed_model_round_trips(name, paddle_reference, photo_batch, tmp_path):
    weights, _ = paddle_reference(name)
    model = create_model(name, pretrained=str(weights))
    _one_sgd_step(model, photo_batch[0])
    src = save_safetensors(model.state_dict(), tmp_path / "stepped.safetensors")
    out = tmp_path / "stepped.pdparams"
    assert main(["convert", str(src), str(out), "--model", name]) == 0
    assert_logits_match(
        _logits(model, photo_batch[0]), _paddleclas_logits(name, out, photo_batch, tmp_path)
    )
    # Our reader takes the file back, with PaddleClas's names and every value exact.
    arrays = read_pdparams(out)
    assert set(arrays) == set(paddle_names(model).values()) and LEGACY_NAMES_KEY not in arrays
    back = create_model(name, pretrained=False)
    assert load_weights(back, out).naming == "paddleclas"
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(back.state_dict()[key], value), key


def test_official_flavour_is_refused_for_pdparams(tmp_path, capsys):
    model = create_model("res2net50_26w_4s", pretrained=False)
    src = save_safetensors(model.state_dict(), tmp_path / "official.safetensors")
    out = tmp_path / "official.pdparams"
    assert main(["convert", str(src), str(out), "--model", "res2net50_26w_4s"]) == 2
    err = capsys.readouterr().err
    assert "error: --model is Res2Net50_26w_4s, official flavour" in err
    assert "PaddleClas's networks compute the paddle flavour only" in err
    assert not out.exists()
