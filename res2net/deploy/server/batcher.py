"""Dynamic batching: requests from any protocol share one queue and one model call.

Concurrent requests each bring a few images; running them one by one leaves the engine's
batch dimension unused. The batcher waits at most ``max_delay_s`` after the first queued
request for more, concatenates up to ``max_batch_size`` images, runs the runtime once and
hands every request its own rows back. The queue is bounded: when it is full, ``submit``
fails at once (the server answers 503 + Retry-After) instead of letting latency grow without
limit. Worker threads call the runtime; PyTorch and the other engines release the GIL.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from res2net.checks import check_number

BatchFn = Callable[[np.ndarray], np.ndarray]
# Called after each model call with (images in the batch, seconds the call took).
BatchObserver = Callable[[int, float], None]


class QueueFullError(RuntimeError):
    """The request queue is at capacity; the client should retry later."""


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no new work."""


@dataclass
class _Item:
    images: np.ndarray
    future: Future = field(default_factory=Future)


class DynamicBatcher:
    """Collects requests into batches for one runtime.

    :param run_batch: float32 N x C x H x W -> N x K outputs (a runtime or ``predict_batch``).
    :param max_batch_size: most images per model call; a single larger request runs in
        chunks of this size.
    :param max_delay_s: how long the first request of a batch waits for company.
    :param max_queue: most requests waiting (not yet running); more raise QueueFullError.
    :param workers: model calls that may run at the same time.
    :param on_batch: metrics hook, called with (batch size, seconds).
    """

    def __init__(
        self,
        run_batch: BatchFn,
        *,
        max_batch_size: int = 8,
        max_delay_s: float = 0.005,
        max_queue: int = 64,
        workers: int = 1,
        on_batch: BatchObserver | None = None,
    ) -> None:
        for name, value in (
            ("max_batch_size", max_batch_size), ("max_queue", max_queue), ("workers", workers)
        ):  # fmt: skip
            check_number(name, value, low=1, integer=True)
        # A minute at most: nan or inf made the first worker fail and the server never ready.
        check_number("max_delay_s", max_delay_s, low=0, high=60)
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.on_batch = on_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._take_lock = threading.Lock()  # one worker assembles a batch at a time
        self._threads = [
            threading.Thread(target=self._work, name=f"res2net-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting in the queue now."""
        return self._queue.qsize()

    def submit(self, images: np.ndarray) -> Future:
        """Queue one request's images; the future resolves to its rows of the output.

        :raises QueueFullError: the queue is full (backpressure).
        :raises BatcherClosedError: the server is shutting down.
        """
        if self._closed:
            raise BatcherClosedError("the server is shutting down; retry on another replica")
        item = _Item(images)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise QueueFullError(
                f"request queue full ({self._queue.maxsize} waiting); retry shortly"
            ) from None
        return item.future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work, finish everything already queued, then stop the workers."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)  # one stop marker per worker, after the queued work
        for thread in self._threads:
            thread.join(timeout)

    def _take(self) -> list[_Item] | None:
        """Block for a first request, then gather more until full or the delay is over."""
        with self._take_lock:
            first = self._queue.get()
            if first is None:
                return None
            items, count = [first], len(first.images)
            deadline = time.monotonic() + self.max_delay_s
            while count < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:  # a stop marker: leave it for this worker's next take
                    self._queue.put(None)
                    break
                items.append(item)
                count += len(item.images)
            return items

    def _work(self) -> None:
        while (items := self._take()) is not None:
            # Requests whose client gave up (timeout) are dropped before they cost compute.
            live = [it for it in items if it.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, items: list[_Item]) -> None:
        try:
            batch = _joined([it.images for it in items])
            outputs = []
            for start in range(0, len(batch), self.max_batch_size):
                chunk = batch[start : start + self.max_batch_size]
                began = time.perf_counter()
                outputs.append(self.run_batch(chunk))
                if self.on_batch is not None:
                    self.on_batch(len(chunk), time.perf_counter() - began)
            result = np.concatenate(outputs)
        except Exception as exc:  # the engine failed: every request of the batch gets it
            for it in items:
                it.future.set_exception(exc)
            return
        offset = 0
        for it in items:
            it.future.set_result(result[offset : offset + len(it.images)])
            offset += len(it.images)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """One batch of the requests' arrays. A lone request's writable array is used as it is
    (a copy would double its memory); read-only ones (views of a received body) are copied,
    as runtimes such as ``torch.from_numpy`` expect to own writable memory."""
    if len(arrays) == 1 and arrays[0].flags.writeable and arrays[0].flags.c_contiguous:
        return arrays[0]
    return np.concatenate(arrays)
