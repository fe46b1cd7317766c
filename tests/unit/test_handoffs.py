"""The primitives that hand a result or a slot from one thread to one other: the task
watcher's Pending outcome (vsphere/tasks.py) and the limits' first-come semaphore
(engine/limits.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from truenas_vmware_coord.engine.limits import _FairSemaphore
from truenas_vmware_coord.vsphere.tasks import Pending, TaskOutcome


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.001)


def test_a_pending_outcome_times_out_then_reaches_every_reader() -> None:
    pending = Pending()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pending.result(0.05)
    assert time.monotonic() - started >= 0.05 and not pending.done()
    got: list[TaskOutcome] = []
    readers = [threading.Thread(target=lambda: got.append(pending.result(5))) for _ in range(3)]
    for reader in readers:
        reader.start()
    outcome = TaskOutcome("success", result="snapshot-1")
    pending.set_result(outcome)
    for reader in readers:
        reader.join(5)
    assert got == [outcome] * 3 and pending.done()
    assert pending.result(0) is outcome


def test_a_pending_outcome_can_be_a_failure() -> None:
    pending = Pending()
    pending.set_exception(ConnectionResetError("the watcher lost its session"))
    with pytest.raises(ConnectionResetError, match="lost its session"):
        pending.result()


def _waiter(sem: _FairSemaphore, name: str, order: list[str], timeout: float = 5.0) -> threading.Thread:
    def take() -> None:
        if sem.acquire(timeout):
            order.append(name)

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def test_freed_slots_go_to_the_waiters_in_arrival_order_not_to_newcomers() -> None:
    sem = _FairSemaphore(1)
    assert sem.acquire(0)
    order: list[str] = []
    waiters = []
    for queued, name in enumerate(("first", "second", "third"), start=1):
        waiters.append(_waiter(sem, name, order))
        _eventually(lambda queued=queued: len(sem._queue) == queued)   # queued in this order
    for served in (["first"], ["first", "second"], ["first", "second", "third"]):
        sem.release()
        _eventually(lambda served=served: len(order) == len(served))
        assert order == served
        assert not sem.acquire(0)   # a newcomer does not take a slot the queue is owed
    for waiter in waiters:
        waiter.join(5)
    sem.release()
    assert sem.acquire(0)   # the last one out left the slot free


def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    sem = _FairSemaphore(1)
    assert sem.acquire(0)
    started = time.monotonic()
    assert not sem.acquire(0.05)
    assert time.monotonic() - started >= 0.05
    order: list[str] = []
    late = _waiter(sem, "late", order)
    _eventually(lambda: len(sem._queue) == 1)
    sem.release()   # to the one still waiting, not to the one that gave up
    late.join(5)
    assert order == ["late"]
