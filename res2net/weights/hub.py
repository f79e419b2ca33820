"""Published weights: download, verify against a pin, cache.

Cache layout (one folder, see :func:`resolve_cache_dir`), per registered name ``NAME``:

``NAME.pdparams`` / ``NAME.safetensors`` / ``NAME.pth``
    the download itself, as published; what is loaded (the readers of
    :mod:`res2net.weights.io` rename PaddleClas's keys as they read).
``NAME.json``
    the record: the model, its registry URL, the file and its SHA-256.

The cache trusts nothing it holds by itself. The trust anchor of a file is its **pin**:

* the registry's ``sha256`` of the entry (a *pinned* model), which no file can change; or,
  for an entry without one,
* the SHA-256 recorded when this machine first downloaded it (*trust on first use*): a
  record counts only if it is whole and names this model, its registry URL and its file.

Every load re-hashes the file and compares it with the pin. A file that does not match, or
that has no pin at all (an unpinned model whose record was deleted or is garbage, or a file
put there by hand), is refused: removed with a warning and fetched again, and if that
fetch fails the error says the cached copy was removed. A file placed by hand is therefore
used only when it matches a pin; to use a file of your own, pass its path
(``create_model(name, pretrained="path")``). Copying a cache folder (files with their
records) from a machine that downloaded them carries their trust along.

Downloads go to a temporary file in the cache folder and are renamed only when complete
(``Content-Length`` matched), matching the pin, and readable as the model's weights, so a
broken transfer never leaves a file that a later run would take as complete.
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

from res2net.weights.errors import WeightFileError

CACHE_ENV = "RES2NET_CACHE"
MIRROR_ENV = "RES2NET_WEIGHTS_URL"
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


def cached_path(
    name: str, source: WeightSource, cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """The downloaded weight file of ``name`` if it is in the cache (not re-hashed), else
    None."""
    path = resolve_cache_dir(cache_dir) / download_filename(name, source)
    return path if path.is_file() else None


def fetch_weights(
    name: str,
    source: WeightSource,
    check: Callable[[Path], object],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The weights at ``source`` as a file in the cache that matches its pin.

    Uses the cached file when its hash matches the pin (see the module docstring);
    otherwise downloads (with a progress bar on stderr when ``progress``), verifies, checks
    and caches.

    :param name: the registered name (the file stem in the cache); a plain name only.
    :param source: the registry entry's weights: ``url`` and pinned ``sha256`` (or None).
    :param check: ``check(downloaded)`` raises
        :class:`~res2net.weights.errors.WeightFileError` for a file that is not the weights.
    :param cache_dir: cache folder; default from :func:`resolve_cache_dir`.
    :param progress: show a download progress bar.
    :raises WeightDownloadError: network / HTTP error, truncated download, hash mismatch,
        a downloaded file that is not the weights, or an unusable cache folder. The
        message names the URL, the cache path where the file can be placed by hand, and
        ``pretrained="path"``.
    """
    folder = _cache_folder(resolve_cache_dir(cache_dir))
    raw = folder / download_filename(_plain_name(name), source)
    record_path = folder / f"{name}.json"
    recorded = _recorded_pin(_read_record(record_path), name, source, raw.name)
    pin = source.sha256 or recorded
    url = weight_url(name, source)
    note = ""
    if raw.is_file():
        digest = _sha256(raw)
        if digest == pin:
            if recorded != pin:  # a file placed by hand that matches the registry's pin
                _write_record(record_path, _record(name, source, raw, digest))
            return raw
        note = _refuse(raw, digest, pin)
    digest = _download(url, raw, pin, progress, name, note)
    try:
        check(raw)
    except WeightFileError as exc:
        raw.unlink(missing_ok=True)
        raise WeightDownloadError(
            f"the file fetched for {name} is not usable weights for it; it was removed.\n{exc}"
        ) from exc
    _write_record(record_path, _record(name, source, raw, digest))
    return raw


def pin_status(name: str, source: WeightSource, cache_dir: str | os.PathLike | None = None) -> str:
    """How ``name``'s weights are verified: ``"pinned"`` (the registry holds their SHA-256),
    ``"recorded"`` (trust on first use, recorded at this cache's first download),
    ``"trust on first use"`` (no pin yet) or ``"-"`` (no published weights)."""
    if not source.url:
        return "-"
    if source.sha256:
        return "pinned"
    folder = resolve_cache_dir(cache_dir)
    record = _read_record(folder / f"{name}.json") if folder.is_dir() else {}
    recorded = _recorded_pin(record, name, source, download_filename(name, source))
    return "recorded" if recorded else "trust on first use"


def _plain_name(name: str) -> str:
    """``name`` if it cannot reach outside the cache folder as a file stem."""
    if (
        not name
        or name != os.path.basename(name)
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise WeightDownloadError(f"{name!r} is not a model name; the cache holds plain names only")
    return name


def _cache_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WeightDownloadError(
            f"weight cache folder {folder} (or a folder above it) is a file, not a folder; "
            f"remove it, or choose another folder with cache_dir= or ${CACHE_ENV}"
        ) from None
    except OSError as exc:
        raise WeightDownloadError(
            f"cannot create the weight cache folder {folder} ({exc.strerror}); choose another "
            f"with cache_dir= or ${CACHE_ENV}"
        ) from None
    return folder


def _record(name: str, source: WeightSource, raw: Path, digest: str) -> dict:
    return {"model": name, "url": source.url, "file": raw.name, "sha256": digest}


def _recorded_pin(record: dict, name: str, source: WeightSource, filename: str) -> str | None:
    """The hash of a record that is whole and belongs to this entry, else None."""
    expected = {"model": name, "url": source.url, "file": filename}
    digest = record.get("sha256")
    if any(record.get(k) != v for k, v in expected.items()) or not _is_sha256(digest):
        return None
    return digest


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _refuse(raw: Path, digest: str, pin: str | None) -> str:
    """Remove a cached file that does not match its pin; the note says why."""
    raw.unlink()
    why = (
        f"has SHA-256 {digest}, not its pin {pin}"
        if pin
        else "has no pin to check it against (no registry hash and no valid record of this "
        "machine's download)"
    )
    note = f"the cached {raw} {why}; it was removed"
    warnings.warn(f"{note}; fetching it again", stacklevel=3)
    return f" ({note})"


def _help(name: str, url: str, raw: Path) -> str:
    return (
        f"\nTo work offline: fetch it on a connected machine (`res2net download {name}`) and copy "
        f"the cache folder, or put the file from {url} at {raw} by hand (used only when it "
        "matches the registry's pin), or load any local copy "
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


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        # An unreadable record holds no trustworthy hash: it pins nothing.
        warnings.warn(f"ignoring unreadable cache record {path}", stacklevel=3)
        return {}
    return record


def _write_record(path: Path, record: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
    os.replace(tmp, path)
