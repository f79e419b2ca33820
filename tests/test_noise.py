"""Third-party noise is dropped where it is logged, and only that: other records of the
same loggers (real warnings and errors) still reach the user."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from conftest import PHOTOS

import res2net  # noqa: F401  (installs the filters)
from res2net.noise import KNOWN_NOISE


@pytest.mark.parametrize("name", sorted(KNOWN_NOISE))
def test_known_lines_are_dropped_and_the_rest_kept(name, caplog):
    logger = logging.getLogger(name)
    with caplog.at_level(logging.WARNING, logger=name):
        for fragment in KNOWN_NOISE[name]:
            logger.warning("x %s y", fragment)
        logger.error("a real error")
    assert [r.getMessage() for r in caplog.records] == ["a real error"]


def test_executorch_import_prints_no_kernelpreference_deprecation():
    """torchao's KernelPreference deprecation used to appear inside pytest's progress and
    before every ExecuTorch export."""
    pytest.importorskip("executorch")
    code = "import res2net; from executorch.runtime import Runtime; Runtime.get()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "KernelPreference" not in proc.stderr, proc.stderr[-2000:]


def test_native_lines_are_dropped_from_the_stderr_file_and_the_rest_kept(capfd):
    """Ray's core worker writes its actor line straight to file descriptor 2 (no logger):
    written there by another thread, as it does, it is dropped; other lines and a partial
    line (a progress bar) still come through, in order."""
    import os
    import threading

    from res2net.noise import RAY_ACTOR_NOISE, drop_native_lines

    native = (
        "[2026-12-05 00:00:48,243 E 5575 5575] core_worker.cc:2465: Actor with class name: "
        f"'MapWorker(MapBatches(_PredictAndWrite))' and ID: 'bd58' {RAY_ACTOR_NOISE[0]}. If "
        "the arguments in the object store go out of scope or are lost, the actor restart "
        "will fail.\n"
    )
    with drop_native_lines(RAY_ACTOR_NOISE):
        writer = threading.Thread(target=os.write, args=(2, native.encode()))
        writer.start()
        writer.join()
        os.write(2, b"[2026-12-05 00:00:49,000 E 1 1] a real native error\n")
        os.write(2, b"\rRunning 10%")
    assert capfd.readouterr().err == (
        "[2026-12-05 00:00:49,000 E 1 1] a real native error\n\rRunning 10%"
    )


def test_executorch_probing_dropped_every_other_line_kept_in_order():
    """What compiled code and Python write to descriptor 2 inside the block comes back, in
    order, without ExecuTorch's probing lines; also when the block raises. In a child
    process, so that pytest's own capture of descriptor 2 is not in the way."""
    code = (
        "import os, sys\n"
        "from res2net.noise import EXECUTORCH_CPUINFO_NOISE, drop_native_lines\n"
        "print('before', file=sys.stderr)\n"
        "try:\n"
        "    with drop_native_lines(EXECUTORCH_CPUINFO_NOISE):\n"
        "        os.write(2, b'[cpuinfo_utils.cpp:87] Failed to open midr file /sys/x\\n')\n"
        "        os.write(2, b'a real error from C\\n')\n"
        "        print('from Python, no newline', end='', file=sys.stderr)\n"
        "        raise KeyError('raised inside')\n"
        "except KeyError:\n"
        "    print('|after', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "before\na real error from C\nfrom Python, no newline|after\n"


@pytest.mark.slow
def test_predict_on_a_pte_prints_no_cpu_probing_but_real_errors(tmp_path):
    """ExecuTorch's XNNPACK delegate prints its CPU probing ("Failed to open midr file")
    from C++ when a method is loaded: it does so here when loaded directly, and the CLI's
    stderr has none of it, while the error about a broken image still reaches the user."""
    pytest.importorskip("executorch")
    from torch import nn

    from res2net.deploy.export import export_model

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()  # lowers in seconds
    pre = {"resize_short": 8, "crop": 8, "mean": [0.5] * 3, "std": [0.5] * 3}
    pte = export_model(model, tmp_path / "linear.pte", fmt="executorch", preprocess=pre)
    direct = (
        "import sys\nfrom executorch.runtime import Runtime\n"
        "Runtime.get().load_program(open(sys.argv[1], 'rb').read()).load_method('forward')\n"
    )
    raw = subprocess.run([sys.executable, "-c", direct, str(pte)], capture_output=True, text=True)
    assert "Failed to open midr file" in raw.stderr, raw.stderr[-2000:]  # the noise is real

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    cmd = [sys.executable, "-m", "res2net", "predict", str(PHOTOS[0]), str(broken)]
    proc = subprocess.run([*cmd, "--model", str(pte)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]  # one of two images failed
    assert "midr" not in proc.stderr and "cpuinfo" not in proc.stderr, proc.stderr
    assert f"failed: {broken}: not an image" in proc.stderr, proc.stderr
    assert PHOTOS[0].name in proc.stdout, proc.stdout  # the good image was classified


# Third-party warnings addressed to the libraries themselves, not to a user of res2net; each
# fired during an export or an ExecuTorch load (torch 2.14, ExecuTorch 1.5). Under pytest-xdist
# a worker's warning travels to the controller, which imports the warning's class to rebuild
# it: ExecuTorch's ExperimentalWarning made the controller import executorch.exir, whose own
# warnings and torchao's KernelPreference log line then landed inside pytest's progress.
LIBRARY_WARNINGS = (
    "ExperimentalWarning",  # executorch/extension/pybindings/portable_lib.py, on import
    "is deprecated. Use files() instead",  # ExecuTorch's exir reading its data files
    "legacy TorchScript-based ONNX",  # the exporter chosen on purpose (res2net.deploy.convert)
    "The feature will be removed",  # torch's TorchScript exporter calling its own API
)


def test_exports_and_an_executorch_load_raise_no_library_warnings(tmp_path):
    """With every warning shown (``-W always``), exporting to ONNX and ExecuTorch and loading
    the ``.pte`` print none of :data:`LIBRARY_WARNINGS`, in a fresh interpreter (each fires
    only on first import); a warning of res2net's own still shows."""
    pytest.importorskip("executorch")
    code = (
        "import sys\n"
        "from torch import nn\n"
        "from res2net.deploy.export import export_model\n"
        "from res2net.deploy.export import load_exported\n"
        "model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()\n"
        "pre = {'resize_short': 8, 'crop': 8, 'mean': [0.5] * 3, 'std': [0.5] * 3}\n"
        "out = sys.argv[1]\n"
        "export_model(model, out + '/linear.onnx', fmt='onnx', preprocess=pre)\n"
        "pte = export_model(model, out + '/linear.pte', fmt='executorch', preprocess=pre)\n"
        "load_exported(pte)\n"
        "import warnings; warnings.warn('own warning still shown', UserWarning)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "own warning still shown" in proc.stderr
    shown = [w for w in LIBRARY_WARNINGS if w in proc.stderr]
    assert not shown, proc.stderr[-3000:]
