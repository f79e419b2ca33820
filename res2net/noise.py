"""Third-party log lines that tell a user nothing, dropped where they are logged.

Each entry names the logger that emits the line and a fragment of that one message; a
:class:`logging.Filter` on that logger drops exactly those records, so anything else the
library logs (real errors included) still reaches the user. Installed on ``import res2net``
(cheap: no third-party import), before any of those libraries is loaded.
"""

from __future__ import annotations

import logging

# logger name -> fragments of messages to drop
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    # torchao registers its KernelPreference enum as a pytree constant when ExecuTorch or
    # its quantizer is imported; torch 2.14 logs a deprecation addressed to torchao.
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
    # NNCF imports torch.utils.cpp_extension, which on a machine with a CUDA toolkit but no
    # GPU logs where it found the toolkit; nothing here builds CUDA extensions.
    "torch.utils.cpp_extension": ("No CUDA runtime is found",),
}


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
