"""Waiting for many vSphere tasks at once.

One private PropertyCollector per watcher (never the session's shared one), one filter
over a ListView that holds the watched tasks, and ``WaitForUpdatesEx`` in one background
thread: tasks started by many workers are added to the view in batches, and one wait call
reports every task that changed. ``maxWaitSeconds`` stays well below the socket read
timeout so a quiet wait never looks like a dead server. ``pyVim.task.WaitForTasks`` is not
used: it shares the session's collector, has no timeout and stops at the first error.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl

from .errors import fault_message, fault_name

log = logging.getLogger(__name__)

PC = vmodl.query.PropertyCollector


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How a task ended: ``success`` with its result, or ``error`` with its fault."""

    state: str
    result: Any = None
    fault: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.state == "success"

    @property
    def fault_type(self) -> str | None:
        return fault_name(self.fault) if self.fault is not None else None

    @property
    def fault_text(self) -> str | None:
        return fault_message(self.fault) if self.fault is not None else None


class TaskWatcher:
    """Watches tasks of one session; ``watch(task)`` returns a Future of its TaskOutcome."""

    def __init__(self, session: Any, max_wait_seconds: int = 1, gather_seconds: float = 0.05,
                 in_flight: Callable[[], int] = lambda: 0) -> None:
        self._content = session.content
        self._max_wait = max_wait_seconds
        self._gather_seconds = gather_seconds
        self._in_flight = in_flight   # start calls not answered yet: their tasks come soon
        self._lock = threading.Condition()
        self._new: list[Any] = []
        # Finished (or forgotten) tasks leave the view with the next ModifyListView, at no
        # extra call: a view that only grows makes every WaitForUpdatesEx re-evaluate every
        # task of the run (bench/README.md, N=1,000 at 200 ms: end phase 31.9 s -> 9.3 s).
        self._gone: list[Any] = []
        self._futures: dict[str, concurrent.futures.Future[TaskOutcome]] = {}
        self._closed = False
        # A wait in progress blocks up to max_wait_seconds while the watched tasks run; a task
        # started meanwhile would only join after it. One CancelWaitForUpdates per wait lets
        # it join at once (vCenter's tasks run for seconds, the simulator's do not).
        self._waiting = False
        self._cancel_sent = False
        self._collector = self._content.propertyCollector.CreatePropertyCollector()
        self._view = self._content.viewManager.CreateListView(obj=[])
        self._collector.CreateFilter(PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=self._view, skip=True, selectSet=[
                PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ListView)])],
            propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.error", "info.result"])]),
            partialUpdates=True)
        self._version = ""
        self._thread = threading.Thread(target=self._run, name="vsphere-task-watcher", daemon=True)
        self._thread.start()

    def watch(self, task: vim.Task) -> concurrent.futures.Future[TaskOutcome]:
        future: concurrent.futures.Future[TaskOutcome] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the task watcher is closed")
            self._futures[task._moId] = future
            self._new.append(task)
            self._lock.notify()
            interrupt = self._waiting and not self._cancel_sent
            self._cancel_sent = self._cancel_sent or interrupt
        if interrupt:
            try:
                self._collector.CancelWaitForUpdates()
            except Exception as exc:  # noqa: BLE001 - the wait ended anyway, or will time out
                log.debug("cancelling a wait: %s", fault_message(exc))
        return future

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._closed and not self._new and not self._futures:
                        self._lock.wait()
                    if self._closed:
                        return
                    self._gather()
                    batch, self._new = self._new, []
                    gone, self._gone = self._gone, []
                if batch:
                    self._view.ModifyListView(add=batch, remove=gone or None)
                elif gone:
                    with self._lock:  # nothing to add: the next call carries them
                        self._gone[:0] = gone
                self._wait_once()
        except Exception as exc:  # noqa: BLE001 - every waiter must learn why, not hang
            log.warning("task watcher stopped: %s", fault_message(exc))
            with self._lock:
                self._closed = True
                futures, self._futures = self._futures, {}
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)

    def _gather(self) -> None:
        """Let tasks started together join one batch: one view change and one wait per wave.

        Holding the lock: while start calls are still in flight, wait (at most
        ``gather_seconds``) for their tasks. Without it a wave of 32 tasks went out in
        ~5 batches of two calls each, their answers being parsed one after another.
        """
        deadline = time.monotonic() + self._gather_seconds
        while self._new and self._in_flight() > 0 and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._lock.wait(left)

    def _wait_once(self) -> None:
        with self._lock:
            self._waiting, self._cancel_sent = True, False
        try:
            update = self._collector.WaitForUpdatesEx(
                self._version, PC.WaitOptions(maxWaitSeconds=self._max_wait))
        except vmodl.fault.RequestCanceled:
            update = None   # cancelled by watch(): new tasks are waiting to join
        finally:
            with self._lock:
                self._waiting = False
        if update is None:
            return
        self._version = update.version
        finished: dict[str, TaskOutcome] = {}
        tasks: list[Any] = []
        for filter_set in update.filterSet or ():
            for obj in filter_set.objectSet or ():
                values = {c.name: c.val for c in obj.changeSet or ()}
                state = values.get("info.state")
                if state in ("success", "error"):
                    tasks.append(obj.obj)
                    finished[obj.obj._moId] = TaskOutcome(
                        state=str(state), result=values.get("info.result"),
                        fault=values.get("info.error"))
        with self._lock:
            done = [(self._futures.pop(m), o) for m, o in finished.items() if m in self._futures]
            self._gone += tasks
        for future, outcome in done:
            future.set_result(outcome)

    def forget(self, task: vim.Task) -> None:
        """Stop waiting for a task (after its deadline); its Future is left unresolved."""
        with self._lock:
            if self._futures.pop(task._moId, None) is not None:
                self._gone.append(task)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(self._max_wait + 5)
        for destroy in (self._view.DestroyView, self._collector.DestroyPropertyCollector):
            try:
                destroy()
            except Exception as exc:  # noqa: BLE001 - cleanup of a finished phase
                log.info("task watcher cleanup: %s", fault_message(exc))
