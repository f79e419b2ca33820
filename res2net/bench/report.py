"""BENCHMARKS.md: each benchmark script owns one marked section and rewrites only that."""

from __future__ import annotations

import platform
import re
from pathlib import Path

HEADER = """# Benchmarks

Every section below is written by a script in `benchmarks/` (named in the section), with the
peers measured in the same run. The list of machines is written by the same scripts: each
records the processor, its vector instructions and the date of its own run."""
UNRECORDED = "not recorded (written before machines were recorded; re-run its script)"
_MACHINE_LINE = re.compile(r"^- `([^`]+)`: (.*)$", re.M)


def write_section(path: str | Path, name: str, text: str, *, machine: str | None = None) -> Path:
    """Replace the ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` block, or append it,
    and record ``machine`` (default: this one, :func:`machine_line`) for it in the header.

    Other sections are left as they are, so scripts can be rerun one at a time.
    """
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    new = _replace_block(old, name, text)
    machines = dict(_MACHINE_LINE.findall(_block(new, "machines") or ""))
    machines[name] = machine or machine_line()
    for section in re.findall(r"<!-- ([\w-]+):begin -->", new):
        if section not in ("header", "machines"):
            machines.setdefault(section, UNRECORDED)
    listing = "\n".join(f"- `{key}`: {value}" for key, value in sorted(machines.items()))
    new = _replace_block(new, "machines", "Machines, per section:\n\n" + listing, first=True)
    new = _replace_block(new, "header", HEADER, first=True)
    path.write_text(new)
    return path


def _block(text: str, name: str) -> str | None:
    found = re.search(f"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    return found.group(1) if found else None


def _replace_block(text: str, name: str, body: str, *, first: bool = False) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    if first:  # the header and machine list go before every section
        return f"{block}\n\n{text.lstrip()}"
    return f"{text.rstrip()}\n\n{block}\n"


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
