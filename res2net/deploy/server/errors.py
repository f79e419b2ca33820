"""The one exception of the server: a refused request and the HTTP status that says why."""

from __future__ import annotations


class ServeError(Exception):
    """A request the server refuses, with the HTTP status that says why.

    :param retry_after: seconds for the Retry-After header (503) or gRPC trailer.
    :param close: close the connection after answering, because the request's body was not
        (fully) read: the client may still be sending it, and reading it would defeat the
        limit that refused it.
    """

    def __init__(
        self, status: int, message: str, retry_after: int | None = None, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.close = close
