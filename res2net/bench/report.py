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


def cpu_isa(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The widest vector / matrix instructions this CPU has, e.g. ``AVX2`` or
    ``AVX-512 + VNNI + AMX`` (the ones that decide FP32 / INT8 / BF16 kernel speed)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.machine() or "unknown ISA"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    if "avx512f" in flags:
        parts = ["AVX-512"]
    elif "avx2" in flags:
        parts = ["AVX2"]
    elif "asimd" in flags:
        parts = ["NEON"]
    else:
        parts = [platform.machine() or "unknown ISA"]
    if flags & {"avx512_vnni", "avx_vnni"}:
        parts.append("VNNI")
    if flags & {"amx_tile", "amx_int8", "amx_bf16"}:
        parts.append("AMX")
    return " + ".join(parts)


def machine_line(device: str = "cpu") -> str:
    """What a figure was measured on, for its title: processor (and ISA) and today's date."""
    import datetime

    today = datetime.date.today().isoformat()
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)}, {today}"
    return f"{cpu_name()} ({cpu_isa()}), {today}"
