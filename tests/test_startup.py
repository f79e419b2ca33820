"""Start-up of the commands a new user runs first: each imports only what it uses.

No timing here (BENCHMARKS.md's start-up section, from benchmarks/startup.py, has the
figures); instead the modules whose import cost seconds on 2 cores are checked absent from a
fresh process: torchvision (whose ``ops`` import torch._dynamo) and torch._dynamo itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PHOTOS

SLOW_IMPORTS = ("torchvision", "torch._dynamo")


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (which may print)."""
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def training_file(tmp_path_factory):
    """A small network saved as `res2net train` saves it (metadata included)."""
    import torch

    from res2net.engine.checkpoint import export_weights
    from res2net.models.res2net import Res2Net, Res2NetConfig

    arch = {"depth": 50, "width": 4, "scales": 4, "deep_stem": True, "avg_down": True}
    torch.manual_seed(0)
    net = Res2Net(Res2NetConfig(**arch), num_classes=3)
    pre = {"resize_short": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    meta = {"arch": arch, "model": None, "num_classes": 3, "classes": ["a", "b", "c"],
            "preprocess": pre}  # fmt: skip
    path = tmp_path_factory.mktemp("run") / "final.safetensors"
    return export_weights(net, path, {"res2net_training": json.dumps(meta)})


def test_predict_from_a_training_file_imports_no_torchvision(training_file):
    code = (
        "from res2net.cli import main; "
        f"assert main(['predict', {str(PHOTOS[0])!r}, '--weights', {str(training_file)!r}]) == 0"
    )
    loaded = _modules_after(code)
    assert "torch" in loaded  # it did run the network
    assert not loaded & set(SLOW_IMPORTS), loaded & set(SLOW_IMPORTS)


def test_predict_with_a_registered_name_imports_no_torchvision():
    """ImageNet's class names come from torchvision's list, read as data."""
    code = (
        "from res2net.cli import main; "
        f"assert main(['predict', {str(PHOTOS[0])!r}, '--model', 'Res2Net50_26w_4s', "
        "'--engine', 'eager']) == 0"
    )
    loaded = _modules_after(code)
    assert not loaded & set(SLOW_IMPORTS), loaded & set(SLOW_IMPORTS)


def test_imagenet_labels_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    from res2net.data.labels import imagenet_labels

    assert imagenet_labels() == ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
