"""BENCHMARKS.md: each benchmark script owns one marked section and rewrites only that."""

from __future__ import annotations

import platform
import re
from pathlib import Path


def write_section(path: str | Path, name: str, text: str) -> Path:
    """Replace the ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` block, or append it.

    Other sections are left as they are, so scripts can be rerun one at a time.
    """
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old}\n{block}\n"
    path.write_text(new)
    return path


def cpu_name() -> str:
    """The processor's model name, for the machine line of a benchmark section."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
