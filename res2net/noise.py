"""Third-party log lines that tell a user nothing, dropped where they are logged.

Each entry names the logger that emits the line and a fragment of that one message; a
:class:`logging.Filter` on that logger drops exactly those records, so anything else the
library logs (real errors included) still reaches the user. Installed on ``import res2net``
(cheap: no third-party import), before any of those libraries is loaded.

Lines that compiled code writes straight to file descriptor 2 pass no logger; the few calls
known to print them run inside :func:`filtered_stderr`, which holds that descriptor's output
and writes every other line back unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

# logger name -> fragments of messages to drop
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    # torchao registers its KernelPreference enum as a pytree constant when ExecuTorch or
    # its quantizer is imported; torch 2.14 logs a deprecation addressed to torchao.
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
    # NNCF imports torch.utils.cpp_extension, which on a machine with a CUDA toolkit but no
    # GPU logs where it found the toolkit; nothing here builds CUDA extensions.
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}


# ExecuTorch's cpuinfo utilities (extension/threadpool/cpuinfo_utils.cpp) print what they
# probe to find ARM cores ("Reading file ...", "Failed to open midr file ...", "CPU info and
# manual query on # of cpus dont match.") whenever XNNPACK plans a method, also on x86 where
# there is no such file; each line starts with that source file's name.
KNOWN_STDERR_NOISE = re.compile(r"^\[cpuinfo_utils\.cpp:\d+\] ")

# One redirection of descriptor 2 at a time: two threads swapping it would each restore the
# other's temporary file.
_STDERR_LOCK = threading.RLock()


class _DropKnown(logging.Filter):
    """Drops the records whose message contains one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(fragment in text for fragment in self.fragments)


def quiet_known_noise() -> None:
    """Install the filters of :data:`KNOWN_NOISE` (once per logger)."""
    for name, fragments in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(fragments))


def without_known_stderr_noise(text: str) -> str:
    """``text`` (captured standard error) without the lines :data:`KNOWN_STDERR_NOISE` matches."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not KNOWN_STDERR_NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Hold everything written to file descriptor 2 while the block runs (Python's
    ``sys.stderr`` and compiled code alike), then write it back to the same place without
    the lines of :data:`KNOWN_STDERR_NOISE`, in order and otherwise unchanged, also when the
    block raises."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as held:
        _flush_stderr()
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 (closed by a daemon): nothing reaches a user
            yield
            return
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = without_known_stderr_noise(held.read().decode(errors="surrogateescape"))
            _write_fd2(kept.encode(errors="surrogateescape"))


def _flush_stderr() -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def _write_fd2(data: bytes) -> None:
    while data:
        data = data[os.write(2, data) :]
