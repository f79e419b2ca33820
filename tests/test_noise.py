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
