"""Many threads' writes in one SQLite transaction: one disk flush for a whole wave of VMs.

With ``synchronous=FULL`` every COMMIT waits for the disk. Thirty-two workers each
committing their own intent queue up behind one lock, and each sends its VMware call late
by the flushes of everyone ahead of it. Here a writer that finds a commit in flight queues
its statement; the next leader runs every queued statement, each in its own savepoint (a
bad row fails only its own writer), and commits once. Every writer still returns only
after its row is on disk: durability before the side effect is unchanged. Each writer
waits on a lock of its own, released by the leader that finished its row or handed it
the lead for the next commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

Statement = Callable[[sqlite3.Connection], Any]
# Opens a write transaction: commits when the block ends, rolls back when it raises.
Transaction = Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]


@dataclasses.dataclass(eq=False)
class _Write:
    statement: Statement
    finished: bool = False
    result: Any = None
    error: BaseException | None = None
    # Held until the write is finished or its writer is to lead the next commit: each
    # writer is woken alone (a shared condition woke every waiting writer at every commit,
    # each then queueing for the condition's lock and the GIL).
    wake: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class GroupCommit:
    """Writes in the transactions ``transaction`` opens, several writers to one."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._queue: list[_Write] = []
        self._lock = threading.Lock()
        self._leading = False

    def write(self, statement: Statement) -> Any:
        """Run ``statement(db)`` in a committed transaction; return what it returned."""
        write = _Write(statement)
        write.wake.acquire()
        with self._lock:
            self._queue.append(write)
            follow, self._leading = self._leading, True
        if follow:
            try:
                write.wake.acquire()   # released by the leader that finished it, or made it lead
            except BaseException:
                self._leave(write)
                raise
        if not write.finished:     # no commit in flight: lead one with everything queued
            self._lead(write)
        if write.error is not None:
            raise write.error
        return write.result

    def _lead(self, leader: _Write) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            for write in batch:
                write.finished = True
                if write is not leader:
                    write.wake.release()
            with self._lock:
                self._leading = bool(self._queue)
                if self._queue:   # the oldest waiting leads the next commit, with all queued by then
                    self._queue[0].wake.release()

    def _leave(self, write: _Write) -> None:
        """A follower's wait was interrupted (Ctrl-C in the main thread): it must not take
        the lead with it. Not yet woken, its row is withdrawn; made to lead, it still leads."""
        with self._lock:
            if not write.wake.acquire(blocking=False):
                if write in self._queue:   # else a commit in flight writes it and wakes no one
                    self._queue.remove(write)
                return
        if not write.finished:
            self._lead(write)

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with self._transaction() as db:
                for write in batch:
                    db.execute("SAVEPOINT write")
                    try:
                        write.result = write.statement(db)
                    except sqlite3.Error as exc:
                        db.execute("ROLLBACK TO write")
                        write.error = exc
                    db.execute("RELEASE write")
        except BaseException as exc:  # noqa: BLE001 - every writer of the batch is told
            for write in batch:
                write.result, write.error = None, write.error or exc
