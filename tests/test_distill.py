"""SSLD distillation: the losses against SciPy, and a student learning from a digits teacher."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_ARCH, tiny_config
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import entropy

from res2net.data.datasets import build_dataset, collate_skipping, folder_samples, render_digits
from res2net.data.preprocess import Preprocess
from res2net.data.transforms import eval_transform
from res2net.engine import losses
from res2net.engine import train as train_module
from res2net.engine.config import ConfigError, config_from_dict
from res2net.engine.distill import js_divergence, symmetric_kl
from res2net.engine.evaluate import evaluate
from res2net.engine.train import train


def _scipy_js(a: np.ndarray, b: np.ndarray) -> float:
    # SciPy returns the Jensen-Shannon *distance*, the square root of the divergence.
    p, q = softmax(a, axis=1), softmax(b, axis=1)
    return float(np.mean([jensenshannon(pi, qi) ** 2 for pi, qi in zip(p, q, strict=True)]))


def _scipy_dml(a: np.ndarray, b: np.ndarray) -> float:
    p, q = softmax(a, axis=1), softmax(b, axis=1)
    return float(
        np.mean([(entropy(pi, qi) + entropy(qi, pi)) / 2 for pi, qi in zip(p, q, strict=True)])
    )


def test_losses_match_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 10, generator=gen, dtype=torch.float64) * 3
    b = torch.randn(16, 10, generator=gen, dtype=torch.float64) * 3
    assert js_divergence(a, b).item() == pytest.approx(_scipy_js(a.numpy(), b.numpy()), rel=1e-5)
    assert symmetric_kl(a, b).item() == pytest.approx(_scipy_dml(a.numpy(), b.numpy()), rel=1e-5)
    assert js_divergence(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert js_divergence(a, b).item() <= np.log(2)


def test_distill_config_errors_name_the_key():
    base = {"model": {"arch": TINY_ARCH}}
    with pytest.raises(ConfigError, match="'distill.teachr'.*did you mean 'teacher'"):
        config_from_dict({**base, "distill": {"teachr": "Res2Net50_26w_4s"}})
    with pytest.raises(ConfigError, match="'distill.loss' must be one of"):
        config_from_dict({**base, "distill": {"teacher": "Res2Net50_26w_4s", "loss": "kl"}})


def _config(digits: Path, out: Path, epochs: int, **sections) -> dict:
    quiet = {"tensorboard": False, "plot": False}
    return tiny_config(
        digits, out, schedule={"epochs": epochs}, train={"log_every": 10}, output=quiet, **sections
    )


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> tuple[Path, Path]:
    """Digits at 16x16 and a teacher trained on them (weights file)."""
    digits = tmp_path_factory.mktemp("digits")
    render_digits(digits, size=16)
    out = tmp_path_factory.mktemp("teacher")
    result = train(config_from_dict(_config(digits, out, epochs=2)))
    assert result.history[-1]["val_top1"] > 0.5, result.history
    return digits, result.final_weights


def test_student_agreement_rises_and_loss_is_js(teacher, tmp_path, monkeypatch):
    digits, teacher_weights = teacher
    # Unlabeled images: a flat folder of training images with no class sub-folders.
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for path, _ in folder_samples(digits / "train")[0][::10]:
        shutil.copy(path, unlabeled / f"{path.parent.name}_{path.name}")
    distill = {
        "teacher_arch": dict(TINY_ARCH),
        "teacher_weights": str(teacher_weights),
        "loss": "js",
        "unlabeled_dirs": [str(unlabeled)],
    }
    cfg = config_from_dict(_config(digits, tmp_path / "student", epochs=2, distill=distill))

    # What the student and teacher agree on before any training (same seed = same init).
    torch.manual_seed(cfg.train.seed)
    fresh = train_module.build_model(cfg.model)
    frozen = train_module._build_teacher(cfg, torch.device("cpu"))
    pre = Preprocess(16, 16, mean=(0.5,) * 3, std=(0.5,) * 3)
    val = build_dataset(digits / "val", eval_transform(pre))
    loader = torch.utils.data.DataLoader(val, 64, collate_fn=collate_skipping)
    before = evaluate(fresh, loader, teacher=frozen)["agreement"]

    # Record every loss the loop computes with the logits it was computed from.
    seen = []
    real_loss = losses.distill_loss

    def recording(name, student_logits, teacher_logits, temperature=1.0):
        loss = real_loss(name, student_logits, teacher_logits, temperature)
        seen.append(
            (
                student_logits.detach().double().numpy(),
                teacher_logits.detach().double().numpy(),
                loss.item(),
            )
        )
        return loss

    monkeypatch.setattr(losses, "distill_loss", recording)
    result = train(cfg)

    after = [row["val_agreement"] for row in result.history]
    assert after[-1] > before + 0.2, (before, after)
    assert after[-1] > 0.6
    # The loss the loop optimises is the JS divergence of the two models' outputs...
    for student_logits, teacher_logits, loss in seen[:3] + seen[-3:]:
        assert loss == pytest.approx(_scipy_js(student_logits, teacher_logits), rel=1e-4)
    # ...and the logged epoch loss is its mean over the epoch's steps.
    steps = len(seen) // 2
    logged = result.history[0]["train_loss"]
    assert logged == pytest.approx(np.mean([s[2] for s in seen[:steps]]), rel=1e-5)


def test_teacher_weights_true_fetches_the_published_weights(tmp_path, monkeypatch):
    """``teacher_weights: true`` goes through the weight hub (a file:// mirror here)."""
    from safetensors.torch import save_file

    from res2net.builder import create_model, download_filename

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.manual_seed(3)
    published = {k: v.contiguous() for k, v in create_model("res2net50d").state_dict().items()}
    save_file(published, str(mirror / download_filename("res2net50d")))
    monkeypatch.setenv("RES2NET_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("RES2NET_CACHE", str(tmp_path / "cache"))

    def build(num_classes: int, **distill):
        cfg = config_from_dict(
            {"model": {"name": "res2net50d", "num_classes": num_classes}, "distill": distill}
        )
        return train_module._build_teacher(cfg, torch.device("cpu"))

    teacher = build(1000, teacher="res2net50d", teacher_weights=True)
    state = teacher.state_dict()
    assert all(torch.equal(state[k], published[k]) for k in published)
    assert not any(p.requires_grad for p in teacher.parameters())
    # A teacher keeps its trained head: 1000-class weights cannot teach a 10-class student.
    with pytest.raises(ValueError, match="fc.weight"):
        build(10, teacher="res2net50d", teacher_weights=True)
    with pytest.raises(ValueError, match="with teacher_arch give a weight file path"):
        build(1000, teacher_arch=dict(TINY_ARCH), teacher_weights=True)
    with pytest.raises(ValueError, match="a file path, or true"):
        build(1000, teacher="res2net50d", teacher_weights=3)
