"""The durable record of what a run intends and has done (SQLite, WAL, synchronous=FULL).

An action row is committed *before* the VMware call that may create something (a
snapshot, a power-off), updated when the call completes, and closed when it is undone.
Whatever crashes in between, ``reconcile`` finds the rows that are not closed and finishes
them. Rows refer to endpoints by id and never hold a password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..domain.model import Strategy
from ..domain.strategies import UNDO_BY_KIND
from ..domain.strategies.base import ActionKind


class ActionState(enum.StrEnum):
    INTENT = "intent"            # about to call VMware; outcome unknown until updated
    DONE = "done"                # created / powered off / suspended: must be undone
    FAILED = "failed"            # VMware refused: nothing to undo
    UNDO_FAILED = "undo_failed"  # removal / power-on failed: reconcile retries
    CLOSED = "closed"            # undone, or found to need nothing

    @property
    def open(self) -> bool:
        return self in (ActionState.INTENT, ActionState.DONE, ActionState.UNDO_FAILED)


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    """One journaled operation on one VM, and how far it got."""

    id: int
    run_id: str
    endpoint_id: str
    vm_moref: str
    vm_name: str
    kind: ActionKind
    strategy: Strategy           # whose undo applies
    state: ActionState
    snapshot_name: str | None
    snapshot_moref: str | None
    error: str | None
    created_at: float
    done_at: float | None
    closed_at: float | None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run: its scope, its state and its documents (the begin context, the manifest)."""

    run_id: str
    dataset: str
    recursive: bool
    snapshot: str | None
    state: str                   # begun | ended
    owner_pid: int | None        # the process that will end it; None: a detached hook run
    started_at: float
    ended_at: float | None
    context: dict[str, Any] | None
    manifest: dict[str, Any] | None

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def document(self) -> dict[str, Any]:
        """What is known of the run: the final manifest, else what begin recorded."""
        return self.manifest or self.context or {}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    recursive INTEGER NOT NULL,
    snapshot TEXT,
    state TEXT NOT NULL,            -- begun | ended
    owner_pid INTEGER,              -- the process that will end it; NULL: a detached hook run
    started_at REAL NOT NULL,
    ended_at REAL,
    context TEXT,                   -- JSON, secret-free
    manifest TEXT                   -- JSON run report
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    endpoint_id TEXT NOT NULL,
    vm_moref TEXT NOT NULL,
    vm_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    strategy TEXT,                  -- NULL in journals older than the column: see UNDO_BY_KIND
    state TEXT NOT NULL,
    snapshot_name TEXT,
    snapshot_moref TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    done_at REAL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS actions_open ON actions(state) WHERE state IN ('intent', 'done', 'undo_failed');
CREATE INDEX IF NOT EXISTS actions_run ON actions(run_id);
CREATE INDEX IF NOT EXISTS runs_snapshot ON runs(snapshot);
"""


class Journal:
    """One SQLite file; safe to share between the threads of one run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(actions)")}
        if "strategy" not in columns:
            self._db.execute("ALTER TABLE actions ADD COLUMN strategy TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 600) -> Iterator[None]:
        """Serialise runs' critical sections and reconcile across processes."""
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        with open(lock_path, "a+") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{lock_path} is held by another run") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- runs ----------------------------------------------------------------------------

    def start_run(self, run_id: str, dataset: str, recursive: bool, now: float,
                  owner_pid: int | None) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO runs(run_id, dataset, recursive, state, owner_pid, started_at) "
                       "VALUES (?, ?, ?, 'begun', ?, ?)",
                       (run_id, dataset, int(recursive), owner_pid, now))

    def save_context(self, run_id: str, context: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET context = ? WHERE run_id = ?",
                       (json.dumps(context, sort_keys=True), run_id))

    def set_snapshot(self, run_id: str, snapshot: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET snapshot = ? WHERE run_id = ?", (snapshot, run_id))

    def end_run(self, run_id: str, manifest: dict[str, Any], now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET state = 'ended', ended_at = ?, manifest = ? WHERE run_id = ?",
                       (now, json.dumps(manifest, sort_keys=True), run_id))

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return self._run_record(row)

    def run_for_snapshot(self, snapshot: str) -> RunRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE snapshot = ? ORDER BY started_at DESC",
                                   (snapshot,)).fetchone()
        return self._run_record(row)

    def latest_open_run(self, dataset: str) -> RunRecord | None:
        """The newest run of ``dataset`` that began and has not ended (pre/post hooks)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM runs WHERE dataset = ? AND state = 'begun' ORDER BY started_at DESC",
                (dataset,)).fetchone()
        return self._run_record(row)

    def runs(self, limit: int = 50) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [_run(r) for r in rows]

    def begun_runs(self) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs WHERE state = 'begun'").fetchall()
        return [_run(r) for r in rows]

    @staticmethod
    def _run_record(row: sqlite3.Row | None) -> RunRecord | None:
        return None if row is None else _run(row)

    # --- actions -------------------------------------------------------------------------

    def intent(self, run_id: str, endpoint_id: str, vm_moref: str, vm_name: str,
               kind: ActionKind, strategy: Strategy, now: float, snapshot_name: str | None = None) -> int:
        """Durably record what is about to be done; returns the action id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO actions(run_id, endpoint_id, vm_moref, vm_name, kind, strategy, state, "
                "snapshot_name, created_at) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?)",
                (run_id, endpoint_id, vm_moref, vm_name, kind.value, strategy.value, snapshot_name, now))
            return int(cur.lastrowid or 0)

    def update(self, action_id: int, state: ActionState, now: float, *,
               snapshot_moref: str | None = None, error: str | None = None) -> None:
        done_at = now if state is ActionState.DONE else None
        closed_at = now if state is ActionState.CLOSED else None
        with self._tx() as db:
            db.execute(
                "UPDATE actions SET state = ?, error = COALESCE(?, error), "
                "snapshot_moref = COALESCE(?, snapshot_moref), done_at = COALESCE(?, done_at), "
                "closed_at = COALESCE(?, closed_at) WHERE id = ?",
                (state.value, error, snapshot_moref, done_at, closed_at, action_id))

    def actions(self, run_id: str | None = None, open_only: bool = False) -> list[ActionRecord]:
        query, args = "SELECT * FROM actions WHERE 1=1", []
        if run_id is not None:
            query += " AND run_id = ?"
            args.append(run_id)
        if open_only:
            query += " AND state IN ('intent', 'done', 'undo_failed')"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_action(r) for r in rows]


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(run_id=row["run_id"], dataset=row["dataset"], recursive=bool(row["recursive"]),
                     snapshot=row["snapshot"], state=row["state"], owner_pid=row["owner_pid"],
                     started_at=row["started_at"], ended_at=row["ended_at"],
                     context=json.loads(row["context"]) if row["context"] else None,
                     manifest=json.loads(row["manifest"]) if row["manifest"] else None)


def _action(row: sqlite3.Row) -> ActionRecord:
    kind = ActionKind(row["kind"])
    return ActionRecord(
        id=row["id"], run_id=row["run_id"], endpoint_id=row["endpoint_id"], vm_moref=row["vm_moref"],
        vm_name=row["vm_name"], kind=kind, strategy=Strategy(row["strategy"] or UNDO_BY_KIND[kind]),
        state=ActionState(row["state"]), snapshot_name=row["snapshot_name"],
        snapshot_moref=row["snapshot_moref"], error=row["error"], created_at=row["created_at"],
        done_at=row["done_at"], closed_at=row["closed_at"])
