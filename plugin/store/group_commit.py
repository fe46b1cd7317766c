"""Many threads' writes in one SQLite transaction: one disk flush for a whole wave of VMs.

With ``synchronous=FULL`` every COMMIT waits for the disk. Thirty-two workers each
committing their own intent queue up behind one lock, and each sends its VMware call late
by the flushes of everyone ahead of it. Here a writer that finds a commit in flight queues
its statement; the next leader runs every queued statement, each in its own savepoint (a
bad row fails only its own writer), and commits once. Every writer still returns only
after its row is on disk: durability before the side effect is unchanged.
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


class GroupCommit:
    """Writes in the transactions ``transaction`` opens, several writers to one."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction
        self._queue: list[_Write] = []
        self._changed = threading.Condition()
        self._leading = False

    def write(self, statement: Statement) -> Any:
        """Run ``statement(db)`` in a committed transaction; return what it returned."""
        write = _Write(statement)
        batch: list[_Write] = []
        with self._changed:
            self._queue.append(write)
            while self._leading and not write.finished:
                self._changed.wait()
            if not write.finished:   # no commit in flight: lead one with everything queued
                self._leading = True
                batch, self._queue = self._queue, []
        if batch:
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    for queued in batch:
                        queued.finished = True
                    self._leading = False
                    self._changed.notify_all()
        if write.error is not None:
            raise write.error
        return write.result

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
