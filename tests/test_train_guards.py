"""A run that trained nothing, or whose weights are no longer numbers, exports nothing and
says so (exit 2), instead of leaving a final.safetensors that predicts garbage."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import yaml
from conftest import tiny_config

from res2net.cli import main
from res2net.data.datasets import render_digits
from res2net.engine.config import config_from_dict
from res2net.engine.train import UntrainedError, train


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A few digits per class: these runs stop after one step."""
    root = tmp_path_factory.mktemp("digits")
    render_digits(root, size=16)
    for split, keep in (("train", 4), ("val", 2)):
        for folder in (root / split).iterdir():
            for extra in sorted(folder.glob("*.png"))[keep:]:
                extra.unlink()
    return root


def test_nan_weights_are_not_exported(digits, tmp_path, monkeypatch, capsys):
    # What optim.lr=.nan did: one step turns the weights into NaN while the loss that step
    # measured (before the update) is still finite, and the run exported them with exit 0.
    step = torch.optim.SGD.step

    def poisoned(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        self.param_groups[0]["params"][0].data.fill_(math.nan)
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    out = tmp_path / "run"
    cfg = tiny_config(digits, out, train={"max_steps": 1, "progress": False})
    cfg["output"] |= {"tensorboard": False, "plot": False}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "Traceback" not in err
    assert not (out / "final.safetensors").exists() and not (out / "best.safetensors").exists()


def test_a_run_of_zero_steps_is_an_error(digits, tmp_path):
    # The config refuses schedule.epochs < 1; a Config built in code is checked again here.
    cfg = config_from_dict(tiny_config(digits, tmp_path / "run"))
    cfg = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, epochs=0))
    with pytest.raises(UntrainedError, match="no training step ran"):
        train(cfg)
    assert not (tmp_path / "run" / "final.safetensors").exists()
