"""The engine's workers: a call the engine stopped waiting for never holds the process.

The command line tool and the schedulers' hooks must exit when their report is written,
even while a call to a hung vCenter is still blocked in a socket (its journal row is open
for reconcile). Python's own ThreadPoolExecutor joins such a thread at exit."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time

import pytest
from truenas_vmware_coord.engine.workers import Workers, bounded

BLOCKED_FOREVER = """
import threading, time
from truenas_vmware_coord.engine.workers import bounded
try:
    bounded(threading.Event().wait, 0.2)
except TimeoutError as exc:
    print(exc, flush=True)
"""


def test_a_process_exits_while_a_call_it_gave_up_on_is_still_blocked():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", BLOCKED_FOREVER], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no answer within 0.2 s"
    assert time.monotonic() - started < 10


def test_bounded_returns_the_answer_or_raises_what_the_call_raised():
    assert bounded(lambda: 42, 5) == 42
    with pytest.raises(ZeroDivisionError):
        bounded(lambda: 1 / 0, 5)


def test_stop_cancels_what_has_not_started_and_lets_the_running_call_end():
    release = threading.Event()
    with Workers(1, "test") as workers:
        running = workers.submit(release.wait, 10)
        queued = workers.submit(lambda: "never")
        time.sleep(0.1)
        workers.stop()
        done, pending = concurrent.futures.wait([running, queued], timeout=0.2)
    assert queued in done and queued.cancelled()
    assert pending == {running}
    release.set()
    assert running.result(timeout=5) is True


def test_no_more_threads_than_the_size_and_each_call_runs_once():
    seen: list[str] = []
    lock = threading.Lock()

    def note(i: int) -> int:
        with lock:
            seen.append(threading.current_thread().name)
        time.sleep(0.01)
        return i

    with Workers(3, "size") as workers:
        futures = [workers.submit(note, i) for i in range(30)]
        assert [f.result(timeout=10) for f in futures] == list(range(30))
    assert len(seen) == 30 and len(set(seen)) <= 3
