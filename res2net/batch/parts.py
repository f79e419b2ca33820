"""A prediction output: a folder of part files, each written whole or not at all.

``results.parquet`` (or ``results.jsonl``) is a folder holding ``part-<hash>.parquet``
files, the layout Spark and Ray Data write and ``pyarrow.parquet.read_table`` /
``pandas.read_parquet`` read back as one table. A part is written to a hidden temp file
beside it and renamed over its final name (``os.replace`` is atomic on POSIX), so a crash
loses at most the part in flight and a reader never sees half a part.

A part's name is a hash of the sources it holds: a block of images that is written twice
(a retried Ray task, a resumed job) overwrites its own part instead of adding a copy.
:func:`drop_duplicates` is the last guard for rows written twice under different names.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("parquet", "jsonl")
COLUMNS = ("source", "class_ids", "scores", "labels", "error")


def output_format(output: str | os.PathLike) -> str:
    """``"parquet"`` or ``"jsonl"`` from the output's suffix; ValueError for others."""
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(
            f"output {os.fspath(output)!r}: name it *.parquet or *.jsonl (a folder of part "
            "files in that format is written there)"
        )
    return suffix


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RuntimeError(
            "writing Parquet needs pyarrow: pip install 'res2net[scale]' (or name the output "
            "*.jsonl)"
        ) from None
    return pyarrow, pyarrow.parquet


def _schema():
    pa, _ = _pyarrow()

    return pa.schema(
        [
            ("source", pa.string()),
            ("class_ids", pa.list_(pa.int64())),
            ("scores", pa.list_(pa.float64())),
            ("labels", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )


def part_name(sources: Sequence[str], fmt: str) -> str:
    """``part-<hash>.<fmt>``: the same sources always give the same name."""
    digest = hashlib.sha256("\n".join(sources).encode("utf-8", "surrogateescape")).hexdigest()
    return f"part-{digest[:24]}.{fmt}"


def write_part(folder: str | os.PathLike, rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Write ``rows`` (dicts with :data:`COLUMNS`) as one part, atomically; returns its name."""
    folder = Path(folder)
    name = part_name([r["source"] for r in rows], fmt)
    # Hidden (leading "."): pyarrow's dataset discovery and read_parts skip it until renamed.
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        if fmt == "parquet":
            pa, pq = _pyarrow()
            table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], _schema())
            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(_jsonl_line(r) + "\n")
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name


def _jsonl_line(row: dict[str, Any]) -> str:
    """A row as strict JSON: Python's bare NaN/Infinity would make the part unreadable to
    every other JSON reader, so a non-finite score is an error naming its image."""
    try:
        return json.dumps({c: row[c] for c in COLUMNS}, allow_nan=False)
    except ValueError:
        raise ValueError(
            f"{row['source']}: the model's scores are NaN or infinite, which JSON cannot carry "
            "(check the model's weights and the mean/std its card gives)"
        ) from None


def part_files(folder: str | os.PathLike, fmt: str) -> list[Path]:
    """The finished parts in ``folder``, sorted by name (temp files are left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"part-*.{fmt}") if p.is_file())


def read_part(path: str | os.PathLike, fmt: str, columns: Iterable[str] = COLUMNS) -> list[dict]:
    """The rows of one part, with the given columns."""
    columns = list(columns)
    if fmt == "parquet":
        return _pyarrow()[1].read_table(path, columns=columns).to_pylist()
    with open(path, encoding="utf-8") as fh:
        return [_jsonl_row(line, columns, path, n) for n, line in enumerate(fh, 1) if line.strip()]


def _jsonl_row(line: str, columns: list[str], path, number: int) -> dict:
    """One JSONL line as a row with ``columns``; ValueError naming the part and line when it
    is not one (a part edited by hand, or a file that only looks like one)."""
    where = f"{os.fspath(path)}, line {number}"
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc}); remove the part to redo its images") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    missing = [c for c in columns if c not in row]
    if missing:
        raise ValueError(f"{where}: row lacks {', '.join(missing)}; remove the part to redo it")
    if "source" in columns and not isinstance(row["source"], str):
        raise ValueError(f"{where}: 'source' must be a string, got {row['source']!r:.60}")
    return {c: row[c] for c in columns}


def read_rows(output: str | os.PathLike) -> list[dict]:
    """Every row of an output folder (all parts), in part-name order."""
    fmt = output_format(output)
    return [row for path in part_files(output, fmt) for row in read_part(path, fmt)]


def prepare_output(output: str | os.PathLike, *, resume: bool) -> tuple[Path, str, set[str]]:
    """Create (or, with ``resume``, reopen) an output folder.

    Returns the folder, its format, and the sources already in it (empty unless resuming).
    Temp files left by a crashed run are removed.

    :raises ValueError: the output exists and ``resume`` is false, or it is a plain file.
    """
    folder, fmt = Path(output), output_format(output)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output {folder} is a file; give a new path (a folder of parts is made)")
    done: set[str] = set()
    if folder.is_dir() and any(folder.iterdir()):
        if not resume:
            raise ValueError(
                f"output {folder} already holds results; pass resume=True (CLI: --resume) to "
                "skip the images in it, or remove it"
            )
        for stale in folder.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        for path in part_files(folder, fmt):
            done.update(r["source"] for r in read_part(path, fmt, ["source"]))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"output {folder}: cannot make this folder ({exc.strerror}); give a path in a "
            "writable folder"
        ) from None
    return folder, fmt, done


def drop_duplicates(folder: str | os.PathLike, fmt: str) -> int:
    """Rewrite parts so that each source appears once (the first part, by name, keeps it).

    Returns the number of rows dropped. Parts named by :func:`part_name` make duplicates
    rare (a retried block overwrites itself); this covers the rest, e.g. a block split
    differently when it was run again.
    """
    seen: set[str] = set()
    rewritten: set[str] = set()
    dropped = 0
    for path in part_files(folder, fmt):
        if path.name in rewritten:
            continue  # written by this pass: its rows were checked already
        sources = [r["source"] for r in read_part(path, fmt, ["source"])]
        keep = [s not in seen for s in sources]
        seen.update(sources)
        if all(keep):
            continue
        dropped += keep.count(False)
        rows = [r for r, k in zip(read_part(path, fmt), keep, strict=True) if k]
        if rows:
            # The rewrite gets the name of its new row set; the old part goes after it.
            rewritten.add(write_part(folder, rows, fmt))
        path.unlink()
    return dropped


def is_uri(source: str) -> bool:
    """Whether ``source`` names a remote file (``s3://``, ``gs://`` ...) rather than a path."""
    return "://" in source and not source.startswith("file://")


def read_source(source: str) -> str | bytes:
    """What the decoder takes for ``source``: the path itself, or a URI's bytes."""
    if not is_uri(source):
        return source
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(source)
    with filesystem.open_input_stream(path) as fh:
        return fh.read()


def prediction_rows(names: list[str], predictions: list) -> list[dict[str, Any]]:
    """Output rows: each prediction under the source name it was asked for."""
    rows = []
    for name, pred in zip(names, predictions, strict=True):
        row = pred.to_dict()
        row["source"] = name
        rows.append(row)
    return rows
