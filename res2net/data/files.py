"""Reading a user's input file whole, safely: a regular file only, and never past a size cap.

A path can name a FIFO (opening it blocks until a writer comes), a device that never ends
(``/dev/zero``) or a file far larger than anything we would decode. Each is refused here,
before a byte is kept, with a message that names the path.
"""

from __future__ import annotations

import os
import stat


class InputFileError(ValueError):
    """A path that cannot be read as an input file; the message starts with the path."""


def read_regular_file(path: str | os.PathLike, max_bytes: int | None) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes`` bytes.

    The file is opened without blocking (a FIFO does not wait for a writer) and checked with
    ``fstat`` on the open descriptor, so what is checked is what is read.

    :param max_bytes: refuse larger files; ``None`` for no cap.
    :raises InputFileError: missing, a folder, not a regular file (FIFO, device, socket),
        unreadable, or over the cap; the message starts with the path.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputFileError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        _check_kind(name, info.st_mode)
        if max_bytes is not None and info.st_size > max_bytes:
            raise InputFileError(_too_large(name, info.st_size, max_bytes))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew while we read it
        raise InputFileError(_too_large(name, len(data), max_bytes))
    return data


def _check_kind(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{name}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = "FIFO" if stat.S_ISFIFO(mode) else "device or socket"
        raise InputFileError(f"{name}: not a regular file (a {kind}); pass a file on disk")


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return f"{name}: {size:,} bytes, over the limit of {max_bytes:,} bytes for this kind of file"
