"""uvicorn's HTTP/1.1 protocol plus a header-read timeout.

uvicorn times out idle keep-alive connections only after a response; a connection that
opens and then sends its request headers a byte at a time (or never) is held forever, so a
few hundred of them occupy the server. This protocol closes any connection that has not
delivered a complete request head within the timeout of opening or of its last response.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """An ``H11Protocol`` class (for ``uvicorn.Config(http=...)``) with that timeout."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_timed_out)

        def _header_timed_out(self) -> None:
            waiting_for_head = self.conn.their_state is h11.IDLE
            busy = self.cycle is not None and not self.cycle.response_complete
            if waiting_for_head and not busy and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
