"""Published weights: download, verify, convert once, cache.

Cache layout (one folder, see :func:`resolve_cache_dir`), per registered name ``NAME``:

``NAME.res2net.safetensors``
    the weights converted to our format (timm's key names); what ``create_model`` loads.
``NAME.json``
    the record: source URL, SHA-256 of the downloaded file and of the converted file.
``NAME.pdparams`` / ``NAME.safetensors`` / ``NAME.pth``
    the download itself, present only until it has been converted. A file placed here by
    hand (for offline machines) is picked up, checked against a pinned hash and converted.

Downloads go to a temporary file in the cache folder and are renamed only when complete
(``Content-Length`` matched) and their hash is right, so a broken transfer never leaves a
file that a later run would take as complete. The SHA-256 of the first successful download
is recorded; a later re-download must match it (or the registry's pinned ``sha256``).

Every load re-hashes the converted file. A cached file whose hash no longer matches its
record is corrupt: it is removed with a warning and fetched again; if that fetch fails,
the error says the cached copy was removed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

CACHE_ENV = "RES2NET_CACHE"
MIRROR_ENV = "RES2NET_WEIGHTS_URL"
CONVERTED_SUFFIX = ".res2net.safetensors"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


class WeightDownloadError(RuntimeError):
    """Published weights could not be fetched or verified; the message says what to do."""


class WeightSource(Protocol):
    """Where published weights live (:class:`res2net.card.WeightSource` is one)."""

    url: str
    sha256: str | None  # pinned hash of the download, or None

    @property
    def format(self) -> str: ...


def resolve_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The weight cache folder: ``path``, else ``$RES2NET_CACHE``, else
    ``$XDG_CACHE_HOME/res2net`` (``~/.cache/res2net`` when XDG_CACHE_HOME is unset)."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "res2net"


def download_filename(name: str, source: WeightSource) -> str:
    """File name of ``name``'s download in the cache (and on a mirror): ``NAME.<format>``."""
    return f"{name}.{source.format}"


def weight_url(name: str, source: WeightSource) -> str:
    """Where the weights are fetched from: ``source.url``, or with ``$RES2NET_WEIGHTS_URL``
    set, ``<that prefix>/NAME.<format>`` (a mirror laid out like the cache folder;
    ``file://`` prefixes work too)."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{download_filename(name, source)}"
    return source.url


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The converted weight file of ``name`` if it is in the cache (not re-hashed), else None."""
    path = resolve_cache_dir(cache_dir) / f"{name}{CONVERTED_SUFFIX}"
    return path if path.is_file() else None


def fetch_weights(
    name: str,
    source: WeightSource,
    convert: Callable[[Path, Path], object],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The weights at ``source`` as a verified ``.safetensors`` file in the cache.

    Uses the cached file when its hash matches the record; otherwise downloads (with a
    progress bar on stderr when ``progress``), checks, converts once and caches.

    :param name: the file stem in the cache (the registered name).
    :param source: the download (:func:`res2net.builder.fetch_weights` takes just a name).
    :param convert: ``convert(downloaded, converted)`` writes the converted file, raising
        :class:`~res2net.weights.errors.WeightFileError` for a file that is not the weights.
    :param cache_dir: cache folder; default from :func:`resolve_cache_dir`.
    :param progress: show a download progress bar.
    :raises WeightDownloadError: network / HTTP error, truncated download, hash mismatch,
        or a downloaded file that is not the weights. The message names the URL,
        the cache path where the file can be placed by hand, and ``pretrained="path"``.
    """
    folder = resolve_cache_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    converted = folder / f"{name}{CONVERTED_SUFFIX}"
    record_path = folder / f"{name}.json"
    record = _read_record(record_path)
    corrupt_note = ""
    if converted.is_file():
        digest = _sha256(converted)
        if record.get("sha256") in (None, digest):
            if record.get("sha256") is None:
                _write_record(record_path, {**record, "file": converted.name, "sha256": digest})
            return converted
        converted.unlink()
        corrupt = (
            f"the cached {converted} was corrupt (SHA-256 {digest} instead of the recorded "
            f"{record['sha256']}) and was removed"
        )
        warnings.warn(f"{corrupt}; fetching it again", stacklevel=2)
        corrupt_note = f" ({corrupt})"

    raw = folder / download_filename(name, source)
    url = weight_url(name, source)
    expected = source.sha256 or record.get("source_sha256")
    if raw.is_file():
        source_sha = _check_hand_placed(raw, expected, name)
    else:
        source_sha = _download(url, raw, expected, progress, name, corrupt_note)
    _convert(raw, converted, name, convert)
    _write_record(
        record_path,
        {
            "model": name,
            "url": source.url,
            "fetched_from": url,
            "source_file": raw.name,
            "source_sha256": source_sha,
            "file": converted.name,
            "sha256": _sha256(converted),
        },
    )
    # The converted file carries the same weights; keeping both would double the disk use.
    raw.unlink()
    return converted


def _help(name: str, url: str, raw: Path) -> str:
    return (
        f"\nTo work offline: fetch it on a connected machine (`res2net download {name}`) and copy "
        f"the cache folder, or put the file from {url} at {raw} by hand, or load any local copy "
        f"with create_model({name!r}, pretrained='path/to/file'). "
        f"To use a mirror, set {MIRROR_ENV} to its URL prefix."
    )


def _download(
    url: str, raw: Path, expected: str | None, progress: bool, name: str, note: str
) -> str:
    """Fetch ``url`` to ``raw`` atomically; returns its SHA-256."""
    fd, tmp_name = tempfile.mkstemp(prefix=raw.name + ".", suffix=".part", dir=raw.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size, expected_size = _stream(url, out, progress, raw.name)
        if expected_size is not None and size != expected_size:
            raise WeightDownloadError(
                f"download of {name} from {url} was truncated: got {size} of {expected_size} "
                f"bytes{note}; nothing was kept. Try again.{_help(name, url, raw)}"
            )
        if expected is not None and digest != expected:
            raise WeightDownloadError(
                f"download of {name} from {url} has SHA-256 {digest}, expected {expected}{note}; "
                "nothing was kept. The file at the source changed or was tampered with (the "
                "expected hash is the registry's pin, else the one recorded at the first "
                f"download in {raw.parent / (name + '.json')}).{_help(name, url, raw)}"
            )
        os.replace(tmp, raw)
        return digest
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # URLError covers HTTP errors, refused connections and unknown hosts; OSError covers
        # timeouts and connections dropped mid-body (http.client.IncompleteRead is one too).
        reason = getattr(exc, "reason", None) or exc
        raise WeightDownloadError(
            f"cannot download weights for {name} from {url}: {reason}{note}{_help(name, url, raw)}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out, progress: bool, label: str) -> tuple[str, int, int | None]:
    """Copy ``url``'s body into ``out``; returns (sha256, bytes read, Content-Length)."""
    from tqdm.auto import tqdm

    hasher = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "res2net"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected_size = int(length) if length is not None else None
        with tqdm(
            total=expected_size, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
            disable=not progress, file=sys.stderr, leave=True,
        ) as bar:  # fmt: skip
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    hasher.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead:
                pass  # the caller reports the short body as a truncated download

    return hasher.hexdigest(), size, expected_size


def _check_hand_placed(raw: Path, expected: str | None, name: str) -> str:
    digest = _sha256(raw)
    if expected is not None and digest != expected:
        raw.unlink()
        raise WeightDownloadError(
            f"{raw} (for {name}) has SHA-256 {digest}, expected {expected}; it was removed. "
            f"Place the right file there, or load it with create_model({name!r}, "
            "pretrained='path/to/file') to skip the check."
        )
    return digest


def _convert(raw: Path, converted: Path, name: str, convert) -> None:
    from res2net.weights.errors import WeightFileError

    try:
        convert(raw, converted)
    except WeightFileError as exc:
        raw.unlink(missing_ok=True)
        raise WeightDownloadError(
            f"the file fetched for {name} is not usable weights for it; it was removed.\n{exc}"
        ) from exc


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # An unreadable record holds no trustworthy hash: start over rather than fail.
        warnings.warn(f"ignoring unreadable cache record {path}", stacklevel=3)
        return {}


def _write_record(path: Path, record: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
    os.replace(tmp, path)
