"""Figures only from a quiet machine: the 1-minute load average before, during and after a
benchmark, and the verdict whether anything beyond the benchmark's own threads ran beside it.

The load average counts the threads ready to run. A benchmark that keeps ``own_threads``
busy adds about that much while it runs (and, decaying, just after), so any load above
``own_threads + LIMIT`` while it ran, or above ``LIMIT`` before it started, was somebody
else's work sharing the cores: its figures would be that job's figures too. Every script in
``benchmarks/`` wraps its run in a :class:`LoadWatch` and hands it to
:func:`res2net.bench.report.write_section`, which refuses a noisy section unless told
otherwise (``--allow-noisy``), and then marks it noisy.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LIMIT = 0.5  # load beyond the benchmark's own threads that still counts as quiet
OVERRIDE_FLAG = "--allow-noisy"


class NoisyMachineError(RuntimeError):
    """A benchmark ran beside other work; its section is not written."""


def one_minute_load() -> float:
    """The 1-minute load average of this machine (``os.getloadavg``)."""
    return os.getloadavg()[0]


def own_cores() -> int:
    """The cores this process may run on: what a benchmark using them all adds to the load."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class LoadWatch:
    """Samples the load before a run, every ``interval`` s during it, and after it.

    Use as a context manager around the measured work. ``read_load`` is the load source (a
    test passes a fake one); ``interval=None`` takes no samples in the background (a caller
    adds them with :meth:`sample`).
    """

    own_threads: float = field(default_factory=own_cores)
    read_load: Callable[[], float] = one_minute_load
    interval: float | None = 5.0
    before: float | None = None
    during: list[float] = field(default_factory=list)
    after: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __enter__(self) -> LoadWatch:
        self.before = self.read_load()
        if self.interval:
            self._thread = threading.Thread(target=self._sample_loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.after = self.read_load()

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Record the load now as one sample taken during the run."""
        self.during.append(self.read_load())

    def beyond_own(self) -> float:
        """The most load seen beyond this run's own threads (before it: beyond nothing)."""
        excess = [self.before] if self.before is not None else []
        excess += [
            load - self.own_threads for load in [*self.during, self.after] if load is not None
        ]
        return max(excess, default=0.0)

    @property
    def noisy(self) -> bool:
        """Whether other work shared the machine (:meth:`beyond_own` above :data:`LIMIT`), or
        may have: a run whose load was never sampled counts as noisy."""
        return self.before is None or self.beyond_own() > LIMIT

    def record(self) -> dict[str, Any]:
        """The samples as plain data, for a run whose section is written elsewhere later."""
        return {"own_threads": self.own_threads, "before": self.before,
                "during": list(self.during), "after": self.after}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> LoadWatch:
        """The watch of :meth:`record`'s output; ``None`` (nothing recorded) is noisy."""
        return cls(interval=None, **(record or {"before": None}))

    def summary(self) -> str:
        """One line for a section: the samples, the allowance and the verdict."""
        during = (
            f"max {max(self.during):.2f} over {len(self.during)} samples"
            if self.during
            else "not sampled"
        )
        return (
            f"1-minute load average: before {_fmt(self.before)}, during {during}, after "
            f"{_fmt(self.after)}; this run's own threads: {self.own_threads:g}; beyond them: "
            f"{self.beyond_own():.2f} (quiet up to {LIMIT})."
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def section_note(watch: LoadWatch, allow_noisy: bool) -> str:
    """The lines a section carries about its machine's load; raises
    :class:`NoisyMachineError` for a noisy run unless ``allow_noisy``."""
    rule = (
        f"A script refuses to write its section when the load beyond its own threads exceeded "
        f"{LIMIT}; `{OVERRIDE_FLAG}` writes it anyway, marked NOISY."
    )
    if not watch.noisy:
        return f"Quiet run. {watch.summary()} {rule}"
    if not allow_noisy:
        raise NoisyMachineError(
            f"the machine was busy during this benchmark ({watch.summary()}); section not "
            f"written. Rerun with nothing else on the machine, or pass {OVERRIDE_FLAG} to write "
            "it marked NOISY."
        )
    return f"**NOISY run** (written with `{OVERRIDE_FLAG}`): {watch.summary()} {rule}"


def add_noise_argument(parser: argparse.ArgumentParser) -> None:
    """The override flag every benchmark script takes."""
    parser.add_argument(
        OVERRIDE_FLAG,
        action="store_true",
        help=f"write the section even when other work raised the load beyond {LIMIT} above "
        "this script's own threads (the section is then marked NOISY)",
    )
