"""The quiet-machine rule of the benchmark scripts, driven by a fake load source (no timing):
a section is written only when nothing beyond the run's own threads shared the machine, or
when the override is given, and then it says NOISY."""

from __future__ import annotations

import pytest

from res2net.bench.quiet import LIMIT, LoadWatch, NoisyMachineError, add_noise_argument
from res2net.bench.report import write_section


def _watch(before: float, during: list[float], after: float, own: float = 2) -> LoadWatch:
    loads = iter([before, *during, after])
    watch = LoadWatch(own_threads=own, read_load=lambda: next(loads), interval=None)
    with watch:
        for _ in during:
            watch.sample()
    return watch


def test_own_threads_are_allowed_others_are_not():
    assert not _watch(0.1, [1.9, 2.4], 2.3).noisy  # only its own two threads
    assert _watch(0.1, [1.9, 2.4 + LIMIT + 0.1], 2.3).noisy  # a third job during the run
    assert _watch(0.9, [1.9], 2.0).noisy  # a job still running when it started
    assert _watch(0.1, [2.0], 3.0).noisy  # one after it, before the last sample
    assert _watch(0.1, [], 0.5, own=1).beyond_own() == pytest.approx(0.1)


def test_quiet_section_records_its_load(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section(path, "x", "figures", load=_watch(0.25, [1.5, 2.1], 1.75))
    text = path.read_text()
    assert "Quiet run. 1-minute load average: before 0.25, during max 2.10 over 2 samples" in text
    assert "after 1.75" in text and "--allow-noisy" in text and "NOISY run" not in text


def test_noisy_section_is_refused_unless_overridden(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("<!-- x:begin -->\nold figures\n<!-- x:end -->\n")
    noisy = _watch(0.2, [6.0], 5.0)
    with pytest.raises(NoisyMachineError, match="--allow-noisy"):
        write_section(path, "x", "new figures", load=noisy)
    assert "old figures" in path.read_text() and "new figures" not in path.read_text()
    write_section(path, "x", "new figures", load=noisy, allow_noisy=True)
    text = path.read_text()
    assert "new figures" in text and "**NOISY run** (written with `--allow-noisy`)" in text
    assert "beyond them: 4.00" in text


def test_every_benchmark_script_watches_its_load():
    """Each script that writes a section takes --allow-noisy and hands its LoadWatch over."""
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "benchmarks"
    for script in sorted(scripts.glob("*.py")):
        source = script.read_text()
        if "write_section(" in source:
            assert "LoadWatch(" in source and "load=" in source, script.name
            assert "add_noise_argument(" in source, script.name


def test_override_flag_parses():
    import argparse

    parser = argparse.ArgumentParser()
    add_noise_argument(parser)
    assert parser.parse_args(["--allow-noisy"]).allow_noisy
    assert not parser.parse_args([]).allow_noisy
