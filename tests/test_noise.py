"""Third-party noise is dropped where it is logged, and only that: other records of the
same loggers (real warnings and errors) still reach the user."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

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
