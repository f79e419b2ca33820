"""A budget of bytes that requests in flight may hold at once, across threads and protocols.

A request reserves its estimated cost before the memory is spent, and releases it when it
is answered. A request that alone costs more than the whole budget is refused for good
(413); one that does not fit beside the requests in flight is refused for now (503 with
Retry-After), so concurrent large requests cannot add up past the budget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from res2net.deploy.server.errors import ServeError


class ByteBudget:
    """Bytes reserved by requests in flight, at most ``total`` at once (thread-safe).

    :param what: what the bytes pay for, as the error messages say it ("decoding images").
    :param advice: what a client can do about a request too large for the whole budget.
    :param on_refusal: called when a request is refused for now (metrics).
    """

    def __init__(
        self,
        total: int,
        *,
        what: str,
        advice: str,
        retry_after_s: int,
        on_refusal: Callable[[], None] | None = None,
    ) -> None:
        self.total = total
        self.what = what
        self.advice = advice
        self.retry_after_s = retry_after_s
        self.on_refusal = on_refusal
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    def reserve(self, cost: int, *, close: bool = False) -> None:
        """Reserve ``cost`` bytes, or refuse the request.

        :param close: passed on to the :class:`ServeError` (the body is still unread).
        :raises ServeError: 413 when ``cost`` exceeds the whole budget, 503 when it does not
            fit beside the requests in flight.
        """
        if cost > self.total:
            raise ServeError(
                413,
                f"{self.what} for this request would take about {cost:,} bytes, over the "
                f"server's budget of {self.total:,}; {self.advice}",
                close=close,
            )
        with self._lock:
            fits = self._used + cost <= self.total
            if fits:
                self._used += cost
        if not fits:
            if self.on_refusal is not None:
                self.on_refusal()
            raise ServeError(
                503,
                f"the server is at its budget for {self.what}; retry shortly",
                retry_after=self.retry_after_s,
                close=close,
            )

    def release(self, cost: int) -> None:
        """Give back ``cost`` bytes reserved earlier."""
        with self._lock:
            self._used -= cost

    @contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Reserve ``cost`` for the duration of the ``with`` block."""
        self.reserve(cost)
        try:
            yield
        finally:
            self.release(cost)
