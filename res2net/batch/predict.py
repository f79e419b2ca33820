"""``batch_predict``: classify a large collection into a Parquet/JSONL folder, resumably.

In one process the sources are classified ``rows_per_part`` at a time by a
:class:`~res2net.deploy.predictor.Predictor` and each group is written as one part (see
:mod:`res2net.batch.parts`), so memory stays flat and a crash loses one part at most. With
``ray`` the same job runs on a Ray cluster (:mod:`res2net.batch.ray_jobs`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from res2net.batch.parts import (
    drop_duplicates,
    is_uri,
    prediction_rows,
    prepare_output,
    read_source,
    write_part,
)
from res2net.data.images import IMAGE_SUFFIXES, collect_images


def expand_sources(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files under each input (folders walked, image suffixes only), each listed once.

    Local folders are walked as ``res2net predict`` walks them; a URI folder is listed
    through pyarrow's filesystems (S3, GCS, HDFS ... as installed).
    """
    found: list[str] = []
    for item in map(os.fspath, inputs):
        found += _list_uri(item) if is_uri(item) else collect_images([item])
    return list(dict.fromkeys(found))


def _list_uri(uri: str) -> list[str]:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
    except OSError as exc:  # offline, unknown bucket, no credentials: the user's to fix
        raise ValueError(f"{uri}: cannot reach it ({exc})") from None
    if info.type != fs.FileType.Directory:
        return [uri]
    scheme = uri.split("://", 1)[0]
    listed = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    return sorted(
        f"{scheme}://{f.path}"
        for f in listed
        if f.type == fs.FileType.File and os.path.splitext(f.path)[1].lower() in IMAGE_SUFFIXES
    )


def predictor_options(
    model: str | os.PathLike | None,
    weights: str | os.PathLike | bool | None,
    **options: Any,
) -> dict[str, Any]:
    """All keyword arguments for :class:`~res2net.deploy.predictor.Predictor` (its defaults
    filled in), as plain data that can be shipped to Ray actors (paths as strings).

    :raises TypeError: an option that ``Predictor`` does not take, named here rather than
        later in a Ray actor.
    """
    from inspect import signature

    from res2net.deploy.predictor import Predictor

    defaults = {
        name: p.default
        for name, p in signature(Predictor).parameters.items()
        if name not in ("model", "weights")
    }
    if unknown := sorted(set(options) - set(defaults)):
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(unknown)}; Predictor's are "
            f"{', '.join(sorted(defaults))}"
        )
    # Paths travel as strings: a Ray actor gets the file's name and loads it itself (an
    # exported model as it is), never a network built here.
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    return {"model": model, "weights": weights, **defaults, **options}


def batch_predict(
    sources: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    weights: str | os.PathLike | bool | None = None,
    resume: bool = False,
    rows_per_part: int = 1024,
    ray: str | None = None,
    num_actors: int = 1,
    cpus_per_actor: float = 0.5,
    progress: bool | None = None,
    **predictor: Any,
) -> dict[str, Any]:
    """Classify every image under ``sources`` into the folder ``output``.

    ``output`` ends in ``.parquet`` or ``.jsonl``; one row per image with ``source``,
    ``class_ids``, ``scores``, ``labels`` and ``error`` (``None`` when it was classified).
    Read it back with ``pyarrow.parquet.read_table(output)`` or
    :func:`res2net.batch.read_rows`.

    :param sources: image files, folders (walked recursively) or URIs pyarrow can read.
    :param model, weights: as :class:`~res2net.deploy.predictor.Predictor`.
    :param resume: skip sources already in ``output`` (else an existing output is an error).
    :param rows_per_part: images per part file (and per Ray actor call).
    :param ray: ``None`` to run here; ``"local"`` to start a Ray instance on this machine
        (shut down afterwards); ``"auto"`` or ``"HOST:PORT"`` / ``"ray://..."`` to connect to
        a running cluster. An already initialized Ray is used as it is.
    :param num_actors: model replicas on Ray (each loads the model once).
    :param cpus_per_actor: CPUs Ray reserves per actor; below 1 leaves room for the read
        and decode tasks on small machines. Actors also take one GPU each on ``cuda``.
    :param predictor: the other keywords of :class:`~res2net.deploy.predictor.Predictor`
        (``engine`` ... ``max_pixels``), with ``engine="eager"`` by default here (an
        exported model: its format's own engine).
    :returns: ``{"model", "output", "written", "failed", "skipped", "duplicates_dropped"}``:
        the model's one name (:attr:`res2net.resolve.ModelSource.name`), rows written by this
        call, how many of them are errors, sources skipped by ``resume``,
        and rows removed because they were written twice.
    """
    if rows_per_part < 1:
        raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
    from res2net.resolve import identify

    options = predictor_options(model, weights, **predictor)
    everything = expand_sources(sources)
    if not everything:
        raise ValueError("sources: no image files found")
    folder, fmt, done = prepare_output(output, resume=resume)
    source = identify(model, weights)
    if "engine" not in predictor:
        # eager by default (no conversion per process); an export runs in its own runtime.
        options["engine"] = "auto" if source.kind == "export" else "eager"
    todo = [s for s in everything if s not in done]
    if not todo:
        written = failed = 0
    elif ray is None:
        written, failed = _predict_here(todo, folder, fmt, options, rows_per_part, progress)
    else:
        from res2net.batch.ray_jobs import ray_predict

        written, failed = ray_predict(
            todo, folder, fmt, options, address=ray, rows_per_part=rows_per_part,
            num_actors=num_actors, cpus_per_actor=cpus_per_actor, progress=progress,
        )  # fmt: skip
    return {
        "model": source.name,
        "output": str(folder),
        "written": written,
        "failed": failed,
        "skipped": len(everything) - len(todo),
        "duplicates_dropped": drop_duplicates(folder, fmt),
    }


def _predict_here(
    todo: list[str],
    folder: os.PathLike,
    fmt: str,
    options: dict[str, Any],
    rows_per_part: int,
    progress: bool | None,
) -> tuple[int, int]:
    from tqdm import tqdm

    from res2net.deploy.predictor import Predictor

    predictor = Predictor(options.pop("model"), options.pop("weights"), **options)
    if progress is None:
        progress = sys.stderr.isatty()
    written = failed = 0
    with tqdm(total=len(todo), unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), rows_per_part):
            names = todo[start : start + rows_per_part]
            rows = prediction_rows(names, predictor.predict(_readable(names), progress=False))
            write_part(folder, rows, fmt)
            written += len(rows)
            failed += sum(r["error"] is not None for r in rows)
            bar.update(len(names))
    return written, failed


def _readable(names: list[str]) -> list[str | bytes]:
    out: list[str | bytes] = []
    for name in names:
        try:
            out.append(read_source(name))
        except OSError:
            out.append(name)  # the decoder reports it as unreadable, naming it
    return out
