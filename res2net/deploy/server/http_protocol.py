"""uvicorn's HTTP/1.1 protocol plus a header-read timeout and a bounded lingering close.

uvicorn times out idle keep-alive connections only after a response; a connection that
opens and then sends its request headers a byte at a time (or never) is held forever, so a
few hundred of them occupy the server. This protocol closes any connection that has not
delivered a complete request head within the timeout of opening or of its last response.

When the server answers before it has read a request's whole body (a body over the limit,
too slow, or over the in-flight budget), the connection must close; closing a socket with
unread data sends a reset, which makes the client lose the answer it has not read yet.
As RFC 9112 section 9.6 advises, the connection closes in stages instead: it stops sending
(FIN after the answer), reads and drops what the client still sends, and closes after at
most ``LINGER_S`` seconds: the client reads the answer, and the server holds nothing for
longer than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_S = 2.0


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers while the body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: H11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        unread_body = self._protocol.conn.their_state is h11.SEND_BODY
        if self.lingering or not unread_body or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()  # the answer, then FIN
        self._transport.resume_reading()  # drain (and drop) the rest, so no reset is sent
        self._protocol.loop.call_later(LINGER_S, self._transport.close)


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """An ``H11Protocol`` class (for ``uvicorn.Config(http=...)``) with that header timeout
    and the lingering close."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            if self.transport.lingering:  # the answer is sent: the rest is dropped
                return
            super().data_received(data)

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
