"""Third-party log lines that tell a user nothing, dropped where they are logged.

Each entry names the logger that emits the line and a fragment of that one message; a
:class:`logging.Filter` on that logger drops exactly those records, so anything else the
library logs (real errors included) still reaches the user. Installed on ``import res2net``
(cheap: no third-party import), before any of those libraries is loaded.

Lines that compiled code writes straight to file descriptor 2 pass no logger; the few calls
known to print them run inside :func:`drop_native_lines`, which reads that descriptor's output
through a pipe and passes every other line on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
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


# One redirection of descriptor 2 at a time: two threads swapping it would each restore the
# other's pipe.
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


# Lines that native code writes straight to the stderr file, with no Python logger to filter:
# dropped by :func:`drop_native_lines` around the call that triggers them.
# Ray's core worker (ray 2.60, src/ray/core_worker/core_worker.cc, CreateActor) logs this
# once per process when an actor with max_restarts != 0 gets constructor arguments through
# the object store. Ray Data always passes its map transformer that way and sets
# max_restarts=-1 (so a dead actor's blocks are retried, which batch prediction relies on):
# every actor pool prints it, whatever our options, and nothing can be lost here.
RAY_ACTOR_NOISE = ("has constructor arguments in the object store and max_restarts > 0",)

# ExecuTorch's cpuinfo utilities (extension/threadpool/cpuinfo_utils.cpp) print what they
# probe to find ARM cores ("Reading file ...", "Failed to open midr file ...", "CPU info and
# manual query on # of cpus dont match.") whenever XNNPACK plans a method, also on x86 where
# there is no such file; each line starts with that source file's name.
EXECUTORCH_CPUINFO_NOISE = ("[cpuinfo_utils.cpp:",)


@contextlib.contextmanager
def drop_native_lines(fragments: tuple[str, ...]) -> Iterator[None]:
    """Within the block, lines written to the stderr file descriptor (by any thread, native
    code included) that contain one of ``fragments`` are dropped; the rest pass through
    unchanged (a partial line at once, unless it starts like a native log line, ``[``)."""
    with _STDERR_LOCK:
        _flush_stderr()
        try:
            saved, (read_end, write_end) = os.dup(2), os.pipe()
        except OSError:  # no stderr file to filter (closed by a daemon)
            yield
            return
        os.dup2(write_end, 2)
        os.close(write_end)
        forward = threading.Thread(
            target=_forward_lines, args=(read_end, saved, fragments), daemon=True
        )
        forward.start()
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)  # closes the last write end: the thread reads to the end, stops
            forward.join()
            os.close(saved)


def without_native_lines(text: str, fragments: tuple[str, ...]) -> str:
    """``text`` (captured standard error) without the lines that contain one of
    ``fragments``."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(f in line for f in fragments))


def _flush_stderr() -> None:
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def _forward_lines(read_end: int, target: int, fragments: tuple[str, ...]) -> None:
    pending = b""
    needles = [f.encode() for f in fragments]
    with os.fdopen(read_end, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not any(n in line for n in needles))
            if pending and not pending.startswith(b"["):  # a progress bar's line: show it now
                out, pending = out + pending, b""
            _write_all(target, out)
    if not any(n in pending for n in needles):
        _write_all(target, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
