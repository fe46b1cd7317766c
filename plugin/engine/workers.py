"""Threads for calls the engine may stop waiting for.

A hypervisor that stops answering (a hung vCenter, a network that drops packets) holds a
call for as long as its socket timeout, again for each call after it, far past the
phase's deadline. The phases stop waiting at their deadline, leave the journal rows of
what did not finish open for reconcile, and go on. These workers are daemon threads, so
a call given up on never keeps the process (the command line tool, a scheduler's hook)
from exiting once its work is done: Python's ThreadPoolExecutor joins its threads at exit.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_STOP = None   # what tells a worker to end


class Workers:
    """At most ``size`` daemon threads, started as work arrives; ``stop`` (or leaving the
    ``with`` block) cancels what has not started and lets running calls end on their own."""

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any],
                                             tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._threads = 0
        self._stopped = False
        self._lock = threading.Lock()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def submit(self, call: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((future, call, args))
        with self._lock:
            if self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item[0].cancel():
                item[0].set_running_or_notify_cancel()   # what concurrent.futures.wait counts as done
        with self._lock:
            for _ in range(self._threads):
                self._queue.put(_STOP)

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
                future.set_exception(exc)


def bounded(call: Callable[[], T], timeout: float) -> T:
    """Run a blocking call in a worker, giving up (not killing it) after ``timeout``
    (``TimeoutError``); a call given up on ends on its own, or with the process."""
    limit = max(0.1, timeout)
    with Workers(1, "bounded") as workers:
        try:
            return workers.submit(call).result(timeout=limit)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer within {limit:.3g} s") from None
