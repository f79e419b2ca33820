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
        "'--random-weights', '--engine', 'eager']) == 0"
    )
    loaded = _modules_after(code)
    assert not loaded & set(SLOW_IMPORTS), loaded & set(SLOW_IMPORTS)


def test_imagenet_labels_are_torchvisions():
    from torchvision.models import ResNet50_Weights

    from res2net.data.labels import imagenet_labels

    assert imagenet_labels() == ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


def _startup_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    spec = importlib.util.spec_from_file_location("startup_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_startup_section_judges_each_budget_and_reports_ray(tmp_path):
    """The benchmark's table from given times: the median against each budget, a missing
    front end said so, and Ray's overhead as the difference of the medians."""
    bench = _startup_script()
    files = {"weights": tmp_path / "w", "onnx": tmp_path / "x.onnx", "image": tmp_path / "i",
             "config": tmp_path / "c", "overrides": []}  # fmt: skip
    cases = bench.cases(files, tmp_path)
    times = {
        0: ([1.0, 1.2, 1.1], None),  # models: median 1.1 <= 1.5
        1: ([], "exit 2: error: unknown weight format"),  # exported file: not there yet
        2: ([7.0, 6.5, 6.8], None),  # registered name: median 6.8 > 6
        5: ([3.0, 3.2, 3.1], None),  # --output, one process
        6: ([9.0, 9.4, 9.1], None),  # --output --ray
    }
    results = [(case, *times.get(i, ([1.0], None))) for i, case in enumerate(cases)]
    text = bench.section(results, 3)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert "| 1.10 | 1.00-1.20 | 1.5 s | within |" in rows[cases[0].label]
    assert "not supported by this checkout: exit 2" in rows[cases[1].label]
    assert "| 6.80 | 6.50-7.00 | 6 s | OVER |" in rows[cases[2].label]
    assert "Ray start-up overhead (one image, local Ray against one process): 6.0 s." in text
