"""The official flavour against timm: timm's checkpoints load through our doors and give
timm's logits on real photos; our weights exported for timm load into timm and agree.

timm models get random weights AND random BatchNorm statistics/affine fitted to the photos
(plain random init gives logits that barely depend on the image, on which a parity check
could not fail: the two flavours differed by ~1% of max|logit| that way, by ~25% with fitted
statistics). The negative control shows it can: PaddleClas's flavour,
with the same file, gives clearly different logits.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from res2net.builder import create_model
from res2net.cli import main
from res2net.models.registry import get_entry
from res2net.models.res2net import Res2Net
from res2net.weights.io import WeightFileError, load_weights

NAMES = ["res2net50_26w_4s", "res2net50_14w_8s", "res2net101_26w_4s", "res2net50d", "res2net101d"]
# The 50-layer models, on which the extra forward passes of the controls are cheap.
CHEAP = ["res2net50_26w_4s", "res2net50d"]


def _randomize_batchnorm(model: nn.Module, photos: torch.Tensor, seed: int) -> None:
    """Random BN affine (smaller gamma at residual-branch ends, bn3), then one train-mode
    pass with cumulative averaging, so running statistics become the photos' own."""
    gen = torch.Generator().manual_seed(seed)
    for name, bn in model.named_modules():
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        lo, hi = (0.2, 0.6) if name.endswith("bn3") else (0.5, 1.5)
        c = bn.num_features
        bn.weight.data = lo + (hi - lo) * torch.rand(c, generator=gen)
        bn.bias.data = 0.3 * torch.randn(c, generator=gen)
        bn.reset_running_stats()
        bn.momentum = None
    model.fc.bias.data = 0.1 * torch.randn(model.fc.bias.shape, generator=gen)
    model.train()
    with torch.no_grad():
        model(photos)
    model.eval()


@pytest.fixture(scope="module")
def timm_reference(photo_batch, tmp_path_factory):
    """Factory: NAME -> (timm .pth, timm .safetensors, timm's logits on the photos)."""
    folder = tmp_path_factory.mktemp("timm_ref")
    done: dict[str, tuple[Path, Path, np.ndarray]] = {}

    def get(name: str) -> tuple[Path, Path, np.ndarray]:
        if name not in done:
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False)
            _randomize_batchnorm(model, photo_batch[0], seed=0)
            with torch.no_grad():
                logits = model(photo_batch[0]).numpy()
            state = model.state_dict()
            pth, st = folder / f"{name}.pth", folder / f"{name}.safetensors"
            torch.save(state, pth)
            save_file({k: v.contiguous() for k, v in state.items()}, st)
            done[name] = (pth, st, logits)
        return done[name]

    return get


def _logits(model: nn.Module, photos: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(photos).numpy()


def _assert_parity(ours: np.ndarray, ref: np.ndarray) -> None:
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-4 * scale
    top5 = np.argsort(-ref, axis=1)[:, :5]
    assert np.array_equal(np.argsort(-ours, axis=1)[:, :5], top5)


def _convert(src: Path, dst: Path, name: str, *extra: str) -> Path:
    assert main(["convert", str(src), str(dst), "--model", name, *extra]) == 0
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_timm_checkpoints_convert_and_match_timm(name, timm_reference, photo_batch, tmp_path):
    pth, st, ref = timm_reference(name)
    photos = photo_batch[0]
    # The check can fail only if timm's outputs depend on the image.
    assert np.abs(ref - ref.mean(axis=0)).max() > 0.05 * np.abs(ref).max()

    ours_file = _convert(pth, tmp_path / "a.safetensors", name)
    from_pth, from_st = (
        load_file(ours_file),
        load_file(_convert(st, tmp_path / "b.safetensors", name)),
    )
    assert all(torch.equal(from_pth[k], from_st[k]) for k in from_pth)
    ours = _logits(create_model(name, pretrained=ours_file), photos)
    _assert_parity(ours, ref)

    # Round trip: exported for timm, it loads strictly into timm with timm's exact tensors
    # (which gave `ref`); the 50-layer models also run timm on it.
    back = load_file(_convert(ours_file, tmp_path / "t.safetensors", name, "--to", "timm"))
    timm_model = timm.create_model(name, pretrained=False)
    timm_model.load_state_dict(back, strict=True)
    original = torch.load(pth, weights_only=True)
    assert all(torch.equal(v, original[k]) for k, v in timm_model.state_dict().items())
    if name in CHEAP:
        _assert_parity(_logits(timm_model, photos), ours)


@pytest.mark.parametrize("name", CHEAP)
def test_paddle_flavour_differs_negative_control(name, timm_reference, photo_batch, tmp_path):
    """The same file in PaddleClas's flavour computes something else: the check above can
    tell the two flavours apart (stem, shortcut and branch order, see models/res2net.py)."""
    _, st, ref = timm_reference(name)
    paddle = Res2Net(replace(get_entry(name).config, flavour="paddle"))
    load_weights(paddle, st)
    other = _logits(paddle, photo_batch[0])
    assert np.abs(other - ref).max() > 1e-2 * np.abs(ref).max()


def test_legacy_and_nested_pth_checkpoints_load(timm_reference, photo_batch, tmp_path):
    name = "res2net50_26w_4s"
    pth, _, ref = timm_reference(name)
    state = torch.load(pth, weights_only=True)
    # Pre-1.6 serialization (as old releases were written) under a non-torch suffix.
    legacy = tmp_path / "res2net50_26w_4s-legacy.weights"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    _assert_parity(_logits(create_model(name, pretrained=legacy), photo_batch[0]), ref)
    # A training checkpoint: nested under "state_dict", DataParallel "module." prefixes.
    nested = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, nested)
    _assert_parity(_logits(create_model(name, pretrained=nested), photo_batch[0]), ref)


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pth_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _RunsCommand(marker)}, evil)
    with pytest.raises(WeightFileError, match="weights_only"):
        load_weights(create_model("res2net50_26w_4s"), evil)
    assert not marker.exists()


def test_export_to_timm_refuses_paddle_flavour(tmp_path, capsys):
    dst = tmp_path / "out.safetensors"
    args = ["convert", "unused.pdparams", str(dst), "--model", "Res2Net50_vd_26w_4s"]
    assert main([*args, "--to", "timm"]) == 2
    assert "official-flavour" in capsys.readouterr().err
    assert not dst.exists()
