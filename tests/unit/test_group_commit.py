"""Group commit: concurrent writers share transactions, each returns only once its row is
committed, and one writer's bad row fails that writer alone (real SQLite, WAL, FULL sync)."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from truenas_vmware_coord.store.group_commit import GroupCommit

WRITERS = 32


def _database(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE rows(id INTEGER PRIMARY KEY, value TEXT UNIQUE)")
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    return db, statements


Transaction = Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]


def _transaction(db: sqlite3.Connection) -> Transaction:
    """The journal's kind of transaction: BEGIN IMMEDIATE, COMMIT, ROLLBACK when it raises."""

    @contextlib.contextmanager
    def transaction() -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    return transaction


def _run_writers(group: GroupCommit, values: list[str], slow_first: bool = True) -> dict[str, object]:
    """Every value written by its own thread, all released at once; what each got back."""
    start = threading.Barrier(len(values))
    results: dict[str, object] = {}

    def insert(value: str) -> None:
        def statement(db: sqlite3.Connection) -> int:
            if slow_first and value == values[0]:
                time.sleep(0.05)   # a commit in flight while the others arrive
            return db.execute("INSERT INTO rows(value) VALUES (?)", (value,)).lastrowid or 0

        start.wait()
        try:
            results[value] = group.write(statement)
        except sqlite3.Error as exc:
            results[value] = exc

    threads = [threading.Thread(target=insert, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_writers_share_commits_and_every_row_is_committed(tmp_path: Path) -> None:
    db, statements = _database(tmp_path / "j.sqlite")
    values = [f"vm-{i}" for i in range(WRITERS)]
    results = _run_writers(GroupCommit(_transaction(db)), values)
    commits = statements.count("COMMIT")
    assert commits <= WRITERS // 2, f"{commits} commits for {WRITERS} writers: no grouping"
    # Each writer got its own row id back, and a second connection sees every row.
    other = sqlite3.connect(tmp_path / "j.sqlite")
    stored = dict(other.execute("SELECT value, id FROM rows"))
    assert stored == results


def test_a_bad_row_fails_its_writer_alone(tmp_path: Path) -> None:
    db, _ = _database(tmp_path / "j.sqlite")
    db.execute("INSERT INTO rows(value) VALUES ('taken')")
    values = [f"vm-{i}" for i in range(8)] + ["taken"]
    results = _run_writers(GroupCommit(_transaction(db)), values)
    assert isinstance(results["taken"], sqlite3.IntegrityError)
    other = sqlite3.connect(tmp_path / "j.sqlite")
    assert {v for (v,) in other.execute("SELECT value FROM rows")} == set(values)
    assert all(isinstance(results[v], int) for v in values[:-1])


def test_a_transaction_that_cannot_start_fails_every_writer_and_the_next_write_works(tmp_path: Path) -> None:
    db, _ = _database(tmp_path / "j.sqlite")
    db.execute("PRAGMA busy_timeout=0")
    # Another connection holds the write lock: BEGIN IMMEDIATE cannot start.
    blocker = sqlite3.connect(tmp_path / "j.sqlite", isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    results = _run_writers(GroupCommit(_transaction(db)), [f"vm-{i}" for i in range(8)])
    assert all(isinstance(r, sqlite3.OperationalError) and "locked" in str(r) for r in results.values())
    blocker.execute("ROLLBACK")
    group = GroupCommit(_transaction(db))
    assert group.write(lambda d: d.execute("INSERT INTO rows(value) VALUES ('x')").lastrowid) == 1


def test_a_follower_interrupted_while_waiting_withdraws_its_row_and_the_others_go_on(tmp_path: Path) -> None:
    # Ctrl-C reaches the main thread while it waits behind a commit in flight: its row is
    # not written, and the writers queued behind it are still led and committed.
    db, _ = _database(tmp_path / "j.sqlite")
    group = GroupCommit(_transaction(db))
    leading = threading.Event()

    def slow(d: sqlite3.Connection) -> int:
        leading.set()
        time.sleep(0.3)
        return d.execute("INSERT INTO rows(value) VALUES ('leader')").lastrowid or 0

    def insert(value: str) -> Callable[[], object]:
        return lambda: group.write(lambda d: d.execute("INSERT INTO rows(value) VALUES (?)",
                                                       (value,)).lastrowid)

    leader = threading.Thread(target=lambda: group.write(slow))
    leader.start()
    assert leading.wait(5)
    behind = threading.Thread(target=insert("behind"))

    def interrupt(signum: int, frame: object) -> None:
        behind.start()   # queued after the interrupted writer
        time.sleep(0.05)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            insert("interrupted")()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    leader.join(5)
    behind.join(5)
    assert not behind.is_alive()
    assert insert("later")() is not None
    stored = {v for (v,) in sqlite3.connect(tmp_path / "j.sqlite").execute("SELECT value FROM rows")}
    assert stored == {"leader", "behind", "later"}
