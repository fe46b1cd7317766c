"""Waiting for many vSphere tasks at once.

One private PropertyCollector per watcher (never the session's shared one), one filter
over a ListView that holds the watched tasks, and two background threads: one adds the
tasks that workers hand over to the view in batches (``ModifyListView``), the other waits
(``WaitForUpdatesEx``) for every task that changed. A view change made while a wait is in
progress ends that wait with the new tasks in it, so no wait is ever cancelled. Each thread
makes at most one call per ``interval_seconds``: the calls are bounded by how long tasks are
watched, not by how many there are or how many waves they come in (bench/README.md).
``maxWaitSeconds`` stays well below the socket read timeout so a quiet wait never looks like
a dead server. ``pyVim.task.WaitForTasks`` is not used: it shares the session's collector,
has no timeout and stops at the first error.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl

from . import wire
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


class Pending:
    """A task's outcome to come; ``result(timeout)`` as a Future's (``TimeoutError`` when it
    does not come in time). A Future wakes its waiter while still holding its condition's
    lock, so every worker woken by the watcher first queued for that lock again: one lock
    released once here, a futex call on each side."""

    __slots__ = ("_latch", "_done", "_outcome", "_error")

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._done = False
        self._outcome: TaskOutcome | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, outcome: TaskOutcome) -> None:
        self._outcome, self._done = outcome, True
        self._latch.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._done = error, True
        self._latch.release()

    def result(self, timeout: float | None = None) -> TaskOutcome:
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the task did not end in time")
        self._latch.release()   # for whoever reads it next
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome


class TaskWatcher:
    """Watches tasks of one session; ``watch(task)`` returns the Pending TaskOutcome.

    ``in_flight(t)``: how many start calls begun before monotonic time ``t`` are still
    unanswered. Calls begun together (a wave of workers) answer together, so a batch waits
    (at most ``gather_seconds``) for the tasks of the calls begun with its own before it
    enters the view.
    """

    def __init__(self, session: Any, max_wait_seconds: int = 1, interval_seconds: float = 0.1,
                 gather_seconds: float = 0.1, in_flight: Callable[[float], int] = lambda since: 0) -> None:
        self._content = session.content
        self._max_wait = max_wait_seconds
        self._interval = interval_seconds
        self._gather_seconds = gather_seconds
        self._in_flight = in_flight
        self._lock = threading.Lock()
        # Each thread is woken only when it has something to do: 32 workers hand over their
        # tasks in a burst, and the view thread needs only the first and the last of it.
        self._view_due = threading.Condition(self._lock)
        self._wait_due = threading.Condition(self._lock)
        self._new: dict[str, Any] = {}       # to enter the view with the next change
        self._wave = 0.0                     # when the start call of the oldest of them began
        self._in_view: set[str] = set()      # in the view, or entering it
        self._changing = False               # a view change is in progress
        # Finished (or forgotten) tasks leave the view with the next change, at no extra call:
        # a view that only grows makes every wait re-evaluate every task of the run
        # (bench/README.md, N=1,000 at 200 ms: end phase 31.9 s -> 9.3 s).
        self._gone: dict[str, Any] = {}
        self._futures: dict[str, Pending] = {}
        # Every outcome seen: a task watched again (after a cancel) that already ended is
        # answered from here, since the filter reports each change only once.
        self._ended: dict[str, TaskOutcome] = {}
        self._waiting = 0                    # the wait in progress (its number), or 0
        self._waits = 0
        # The view changed while no wait was in progress: the next wait starts from an empty
        # version, which answers at once with the current state (a wait for changes answers
        # at the server's next round: 250 ms in govmomi 0.24.2's simulator).
        self._fresh = False
        self._closed = False
        self._collector = self._content.propertyCollector.CreatePropertyCollector()
        self._view = self._content.viewManager.CreateListView(obj=[])
        self._collector.CreateFilter(PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=self._view, skip=True, selectSet=[
                PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ListView)])],
            # The error is read only for the tasks that failed (see _resolve).
            propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.state", "info.result"])]),
            partialUpdates=True)
        self._updates = wire.Collector(self._collector)
        self._version = ""
        self._threads = [threading.Thread(target=self._guarded, args=(loop,), name=name, daemon=True)
                         for loop, name in ((self._view_loop, "vsphere-task-view"),
                                            (self._wait_loop, "vsphere-task-watcher"))]
        for thread in self._threads:
            thread.start()

    def watch(self, task: vim.Task, begun: float | None = None) -> Pending:
        """Watch a task; ``begun``: when the call that started it began (default: now)."""
        future = Pending()
        moref = task._moId
        with self._lock:
            if self._closed:
                raise RuntimeError("the task watcher is closed")
            ended = self._ended.get(moref)
            if ended is None:
                self._futures[moref] = future
                if self._gone.pop(moref, None) is not None or moref in self._in_view:
                    self._wait_due.notify()   # in the view already: its change is still to come
                else:
                    if not self._new:
                        self._wave = time.monotonic() if begun is None else begun
                    self._new[moref] = task
                    if len(self._new) == 1 or not self._in_flight(self._wave + self._gather_seconds):
                        self._view_due.notify()   # the first of a batch, or the last awaited
        if ended is not None:
            future.set_result(ended)
        return future

    def _guarded(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:  # noqa: BLE001 - every waiter must learn why, not hang
            log.warning("task watcher stopped: %s", fault_message(exc))
            with self._lock:
                self._closed = True
                futures, self._futures = self._futures, {}
                self._view_due.notify_all()
                self._wait_due.notify_all()
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)

    def _pause(self, due: threading.Condition, until: float) -> bool:
        """Holding the lock: wait until ``until`` (or close); False once closed."""
        while not self._closed and (left := until - time.monotonic()) > 0:
            due.wait(left)
        return not self._closed

    def _view_loop(self) -> None:
        """New tasks enter the view (and finished ones leave it): one change per interval at most."""
        last = -self._interval
        while True:
            with self._lock:
                while not self._closed and not self._new:
                    self._view_due.wait()
                if not self._pause(self._view_due, last + self._interval) or not self._gather():
                    return
                batch, self._new = list(self._new.values()), {}
                gone, self._gone = list(self._gone.values()), {}
                self._in_view.difference_update(t._moId for t in gone)
                self._in_view.update(t._moId for t in batch)
                during, self._changing = self._waiting, True
                last = time.monotonic()
            try:
                wire.call(self._view, "ModifyListView", batch, gone or None)
            finally:
                with self._lock:
                    # Only a wait in progress all along is sure to report the change.
                    self._fresh = self._fresh or not during or self._waiting != during
                    self._changing = False
                    self._wait_due.notify()

    def _gather(self) -> bool:
        """Holding the lock: let tasks started together join one batch; False once closed.

        While start calls begun with the oldest waiting task's (within ``gather_seconds``)
        are still in flight, wait (at most ``gather_seconds``) for their tasks: without it
        a wave of 32 tasks went out in ~5 batches, their answers being parsed one after
        another. Calls begun later belong to the next wave and are not waited for.
        """
        deadline = time.monotonic() + self._gather_seconds
        while not self._closed and self._in_flight(self._wave + self._gather_seconds) > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._view_due.wait(left)
        return not self._closed

    def _wait_loop(self) -> None:
        """Waits while tasks in the view are watched: one wait per interval at most, never
        cancelled (a view change ends a wait in progress)."""
        last = -self._interval
        while True:
            with self._lock:
                while not self._closed and (self._changing or not any(m in self._in_view
                                                                      for m in self._futures)):
                    self._wait_due.wait()
                if not self._pause(self._wait_due, last + self._interval):
                    return
                last = time.monotonic()
                version = "" if self._fresh else self._version
                self._waits += 1
                self._waiting, self._fresh = self._waits, False
            try:
                update = self._updates.WaitForUpdatesEx(
                    version, PC.WaitOptions(maxWaitSeconds=self._max_wait))
            finally:
                with self._lock:
                    self._waiting = 0
            if update is not None:
                self._version = update.version
                self._resolve(update)

    def _resolve(self, update: Any) -> None:
        finished: dict[str, tuple[Any, TaskOutcome]] = {}
        failed: list[Any] = []
        for filter_set in update.filterSet or ():
            for obj in filter_set.objectSet or ():
                values = wire.properties(obj, "changeSet")
                state = values.get("info.state")
                if state == "success":
                    finished[obj.obj._moId] = (obj.obj, TaskOutcome(state, result=values.get("info.result")))
                elif state == "error":
                    failed.append(obj.obj)
        for task, fault in self._faults(failed).items():
            finished[task._moId] = (task, TaskOutcome("error", fault=fault))
        with self._lock:
            done = [(self._futures.pop(m), o) for m, (_, o) in finished.items() if m in self._futures]
            self._ended.update((m, o) for m, (_, o) in finished.items())
            self._gone.update((m, t) for m, (t, _) in finished.items() if m in self._in_view)
        for future, outcome in done:
            future.set_result(outcome)

    def _faults(self, tasks: list[Any]) -> dict[Any, Any]:
        """The faults of failed tasks, read by pyVmomi (which turns each into its exception
        type): one retrieval, only when some failed."""
        if not tasks:
            return {}
        result = self._collector.RetrievePropertiesEx([PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=t, skip=False) for t in tasks],
            propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.error"])])], PC.RetrieveOptions())
        found = {oc.obj._moId: p.val for oc in (result.objects if result else ()) for p in oc.propSet or ()}
        return {t: found.get(t._moId) for t in tasks}

    def forget(self, task: vim.Task) -> None:
        """Stop waiting for a task (after its deadline); its Pending is left unresolved."""
        moref = task._moId
        with self._lock:
            if self._futures.pop(moref, None) is None:
                return
            # Never sent, it need not enter the view at all.
            if self._new.pop(moref, None) is None and moref in self._in_view:
                self._gone[moref] = task

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._view_due.notify_all()
            self._wait_due.notify_all()
        for thread in self._threads:
            thread.join(self._max_wait + 5)
        for destroy in (self._view.DestroyView, self._collector.DestroyPropertyCollector):
            try:
                destroy()
            except Exception as exc:  # noqa: BLE001 - cleanup of a finished phase
                log.info("task watcher cleanup: %s", fault_message(exc))
