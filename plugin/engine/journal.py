"""The durable record of what a run intends and has done (SQLite, WAL, synchronous=FULL).

An action row is committed *before* the VMware call that may create something (a
snapshot, a power-off), updated when the call completes, and closed when it is undone.
Whatever crashes in between, ``reconcile`` finds the rows that are not closed and finishes
them. Rows refer to endpoints by id and never hold a password.

The journal is also where things go wrong on a real disk: a read-only or full state
directory, a file that is not (or no longer) a database. Every such failure leaves this
module as a ``JournalError`` that names the file and says how to repair it. A corrupted
journal is moved aside (``<name>.corrupt-<UTC time>``), never silently reused, and a fresh
one takes its place; ``moved_aside`` says so, for the caller to report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..domain.errors import StateError
from ..domain.model import Strategy
from ..domain.restore import RestoreState, RestoreStep
from ..domain.strategies import UNDO_BY_KIND
from ..domain.strategies.base import ActionKind
from ..store import sqlite
from ..store.group_commit import GroupCommit

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class JournalError(StateError):
    """The journal cannot be read or written; the message names the file and the fix."""


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
    """One journaled operation on one VM, and how far it got. ``id`` 0: known only from a
    run's context, not from the journal (the journal could not be read)."""

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
    snapshot: str | None         # the (first) ZFS snapshot it made
    state: str                   # begun | ended
    owner_pid: int | None        # the process that will end it; None: a detached hook run
    started_at: float
    ended_at: float | None
    context: dict[str, Any] | None
    manifest: dict[str, Any] | None
    hook_key: str | None = None       # what a pre hook was given; its post must give the same
    live_until: float | None = None   # a detached run stops counting as alive at this time

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def document(self) -> dict[str, Any]:
        """What is known of the run: the final manifest, else what begin recorded."""
        return self.manifest or self.context or {}


@dataclasses.dataclass(frozen=True)
class RestoreStepRecord:
    """One side effect of a restore (journaled before it is made) and how far it got."""

    id: int
    restore_id: str
    step: RestoreStep
    state: ActionState           # intent, done, failed; closed once taken away
    ref: str | None              # what it made: the clone's dataset, the share, a moref
    error: str | None
    created_at: float
    done_at: float | None
    closed_at: float | None


@dataclasses.dataclass(frozen=True)
class RestoreRecord:
    """One restore: its plan, its state, and its steps."""

    restore_id: str
    run_id: str
    snapshot: str
    vm_name: str
    new_name: str
    state: RestoreState
    owner_pid: int | None
    started_at: float
    ended_at: float | None
    plan: dict[str, Any]
    error: str | None
    steps: tuple[RestoreStepRecord, ...] = ()

    def made(self, step: RestoreStep) -> RestoreStepRecord | None:
        """The step's row when it may have taken effect and was not taken away yet."""
        return next((s for s in reversed(self.steps) if s.step is step
                     and s.state in (ActionState.INTENT, ActionState.DONE, ActionState.UNDO_FAILED)), None)


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
    context BLOB,                   -- JSON, secret-free (zlib-compressed; TEXT in older rows)
    manifest BLOB,                  -- JSON run report (likewise)
    hook_key TEXT,                  -- scheduler, dataset and snapshot names a pre hook was given
    live_until REAL                 -- detached runs: alive until then
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
CREATE TABLE IF NOT EXISTS run_snapshots (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    snapshot TEXT NOT NULL,
    PRIMARY KEY (run_id, snapshot)
);
CREATE TABLE IF NOT EXISTS restores (
    restore_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,           -- the run whose snapshot it restores from
    snapshot TEXT NOT NULL,
    vm_name TEXT NOT NULL,
    new_name TEXT NOT NULL,
    state TEXT NOT NULL,            -- restoring | restored | undone | cleaning | cleaned
    owner_pid INTEGER,              -- the process doing it
    started_at REAL NOT NULL,
    ended_at REAL,
    plan BLOB NOT NULL,             -- JSON RestorePlan, secret-free (zlib-compressed)
    error TEXT
);
CREATE TABLE IF NOT EXISTS restore_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    restore_id TEXT NOT NULL REFERENCES restores(restore_id),
    step TEXT NOT NULL,             -- RestoreStep
    state TEXT NOT NULL,            -- ActionState
    ref TEXT,                       -- what it made: dataset, share, datastore or VM moref
    error TEXT,
    created_at REAL NOT NULL,
    done_at REAL,
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS restore_steps_by_restore ON restore_steps(restore_id);
CREATE INDEX IF NOT EXISTS actions_open ON actions(state) WHERE state IN ('intent', 'done', 'undo_failed');
CREATE INDEX IF NOT EXISTS actions_run ON actions(run_id);
CREATE INDEX IF NOT EXISTS runs_snapshot ON runs(snapshot);
CREATE INDEX IF NOT EXISTS run_snapshots_snapshot ON run_snapshots(snapshot);
CREATE INDEX IF NOT EXISTS runs_by_hook_key ON runs(hook_key);
"""
# Columns added since the first release, with their types: an older journal gains them.
_ADDED = {"runs": {"hook_key": "TEXT", "live_until": "REAL"}, "actions": {"strategy": "TEXT"}}
_OPEN_STATES = "('intent', 'done', 'undo_failed')"
# Ended runs with no open action that are too old, or beyond the newest N ended ones.
_PRUNABLE = (
    "SELECT run_id FROM runs WHERE state = 'ended' AND run_id NOT IN "
    "(SELECT run_id FROM actions WHERE state IN ('intent', 'done', 'undo_failed')) AND (started_at < ? "
    "OR run_id NOT IN (SELECT run_id FROM runs WHERE state = 'ended' ORDER BY started_at DESC LIMIT ?))")


def _explain(path: Path, exc: BaseException) -> JournalError:
    return JournalError("journal " + sqlite.explain(
        path, exc, corrupt_fix="it is moved aside and replaced by a new one on the next run that writes it"))


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Let only JournalErrors out of a journal method."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except JournalError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _explain(args[0].path, exc) from None  # type: ignore[attr-defined]

    return call


class Journal:
    """One SQLite file; safe to share between the threads of one run."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.moved_aside: Path | None = None
        self._lock = threading.Lock()
        try:
            self._db = self._connect(readonly)
            if not readonly:
                self._prepare()
        except JournalError:
            raise
        except (sqlite3.Error, OSError) as exc:
            if readonly or not sqlite.corrupt(exc):
                raise _explain(self.path, exc) from None
            self.moved_aside = self._move_aside(exc)
            self._db = self._connect(False)
            self._prepare()
        self._group = GroupCommit(self._tx)   # the run's hot path: intents, updates

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly and not self.path.exists():   # no run made yet: nothing to read
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.executescript(_SCHEMA)
            return db
        if readonly:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                 isolation_level=None, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            found = db.execute("PRAGMA quick_check").fetchone()[0]
        except BaseException:
            db.close()
            raise
        if found != "ok":
            db.close()
            raise sqlite3.DatabaseError(f"database disk image is malformed: {found}")
        return db

    def _prepare(self) -> None:
        db = self._db
        if not db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")   # pruning gives space back
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        for table, columns in _ADDED.items():
            present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _move_aside(self, exc: BaseException) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{aside}{suffix}")
        except OSError as err:
            raise _explain(self.path, err) from None
        log.error("journal %s is corrupted (%s): moved aside to %s; a new journal is used. Runs "
                  "recorded only there are not finished by reconcile, but their VMware snapshots "
                  "carry the marker and are swept once older than the marker age.", self.path, exc, aside)
        return aside

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:   # a failed COMMIT (disk full) must not leave it open
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _has(self, table: str) -> bool:
        return bool(self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)))

    def _rows(self, query: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(query, tuple(args)).fetchall()

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 600) -> Iterator[None]:
        """Serialise runs' critical sections and reconcile across processes."""
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
        except OSError as exc:
            raise _explain(self.path, exc) from None
        with handle:
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

    @_guarded
    def start_run(self, run_id: str, dataset: str, recursive: bool, now: float,
                  owner_pid: int | None, hook_key: str | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO runs(run_id, dataset, recursive, state, owner_pid, started_at, hook_key) "
                       "VALUES (?, ?, ?, 'begun', ?, ?, ?)",
                       (run_id, dataset, int(recursive), owner_pid, now, hook_key))

    @_guarded
    def save_context(self, run_id: str, context: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET context = ? WHERE run_id = ?", (_dump(context), run_id))

    @_guarded
    def detach(self, run_id: str, live_until: float) -> None:
        """The run's owner leaves; it is alive (for its post hook) until ``live_until``."""
        with self._tx() as db:
            db.execute("UPDATE runs SET owner_pid = NULL, live_until = ? WHERE run_id = ?",
                       (live_until, run_id))

    @_guarded
    def set_snapshot(self, run_id: str, snapshot: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET snapshot = COALESCE(snapshot, ?) WHERE run_id = ?",
                       (snapshot, run_id))
            db.execute("INSERT OR IGNORE INTO run_snapshots(run_id, snapshot) VALUES (?, ?)",
                       (run_id, snapshot))

    @_guarded
    def end_run(self, run_id: str, manifest: dict[str, Any], now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET state = 'ended', ended_at = ?, manifest = ? WHERE run_id = ?",
                       (now, _dump(manifest), run_id))

    @_guarded
    def run(self, run_id: str) -> RunRecord | None:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    @_guarded
    def run_for_snapshot(self, snapshot: str) -> RunRecord | None:
        if not self._has("run_snapshots"):   # an older journal, opened read-only
            rows = self._rows("SELECT * FROM runs WHERE snapshot = ? ORDER BY started_at DESC", (snapshot,))
        else:
            rows = self._rows("SELECT runs.* FROM runs JOIN run_snapshots USING (run_id) "
                              "WHERE run_snapshots.snapshot = ? UNION SELECT * FROM runs WHERE snapshot = ? "
                              "ORDER BY started_at DESC", (snapshot, snapshot))
        return _run(rows[0]) if rows else None

    @_guarded
    def snapshots_of(self, run_id: str) -> list[str]:
        return [r["snapshot"] for r in self._rows(
            "SELECT snapshot FROM run_snapshots WHERE run_id = ? ORDER BY snapshot", (run_id,))]

    @_guarded
    def run_for_hook(self, hook_key: str) -> RunRecord | None:
        """The run a pre hook recorded under exactly this key (begun, or already ended: a
        strict pre refused it, or reconcile finished it)."""
        rows = self._rows("SELECT * FROM runs WHERE hook_key = ? ORDER BY started_at DESC", (hook_key,))
        return _run(rows[0]) if rows else None

    @_guarded
    def runs(self, limit: int = 50) -> list[RunRecord]:
        return [_run(r) for r in self._rows("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))]

    @_guarded
    def begun_runs(self) -> list[RunRecord]:
        return [_run(r) for r in self._rows("SELECT * FROM runs WHERE state = 'begun'")]

    @_guarded
    def prune(self, now: float, keep_days: float, keep_runs: int) -> int:
        """Forget ended runs older than ``keep_days`` or beyond the newest ``keep_runs``; never
        a run that has not ended or still has an open action. Returns how many went."""
        with self._tx() as db:
            cut = db.execute(_PRUNABLE, (now - keep_days * 86400, keep_runs)).fetchall()
            gone = [r["run_id"] for r in cut]
            for table in ("actions", "run_snapshots", "runs"):
                db.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(g,) for g in gone])  # noqa: S608
        if gone:
            with self._lock:
                if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
                    # A journal made before pruning existed: converted once, then incremental.
                    self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    self._db.execute("VACUUM")
                self._db.execute("PRAGMA incremental_vacuum")
        return len(gone)

    # --- actions -------------------------------------------------------------------------

    @_guarded
    def intent(self, run_id: str, endpoint_id: str, vm_moref: str, vm_name: str,
               kind: ActionKind, strategy: Strategy, now: float, snapshot_name: str | None = None) -> int:
        """Durably record what is about to be done; returns the action id."""
        row = (run_id, endpoint_id, vm_moref, vm_name, kind.value, strategy.value, snapshot_name, now)
        return int(self._group.write(lambda db: db.execute(
            "INSERT INTO actions(run_id, endpoint_id, vm_moref, vm_name, kind, strategy, state, "
            "snapshot_name, created_at) VALUES (?, ?, ?, ?, ?, ?, 'intent', ?, ?)", row).lastrowid or 0))

    @_guarded
    def update(self, action_id: int, state: ActionState, now: float, *,
               snapshot_moref: str | None = None, error: str | None = None) -> None:
        done_at = now if state is ActionState.DONE else None
        closed_at = now if state is ActionState.CLOSED else None
        row = (state.value, error, snapshot_moref, done_at, closed_at, action_id)
        self._group.write(lambda db: db.execute(
            "UPDATE actions SET state = ?, error = COALESCE(?, error), "
            "snapshot_moref = COALESCE(?, snapshot_moref), done_at = COALESCE(?, done_at), "
            "closed_at = COALESCE(?, closed_at) WHERE id = ?", row))

    @_guarded
    def actions(self, run_id: str | None = None, open_only: bool = False) -> list[ActionRecord]:
        query, args = "SELECT * FROM actions WHERE 1=1", []
        if run_id is not None:
            query += " AND run_id = ?"
            args.append(run_id)
        if open_only:
            query += f" AND state IN {_OPEN_STATES}"
        return [_action(r) for r in self._rows(query + " ORDER BY id", args)]

    # --- restores ------------------------------------------------------------------------

    @_guarded
    def start_restore(self, plan: dict[str, Any], now: float, owner_pid: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO restores(restore_id, run_id, snapshot, vm_name, new_name, state, "
                       "owner_pid, started_at, plan) VALUES (?, ?, ?, ?, ?, 'restoring', ?, ?, ?)",
                       (plan["restore_id"], plan["run_id"], plan["snapshot"], plan["vm_name"],
                        plan["new_name"], owner_pid, now, _dump(plan)))

    @_guarded
    def set_restore_state(self, restore_id: str, state: RestoreState, now: float, *,
                          owner_pid: int | None = None, error: str | None = None) -> None:
        ended = None if state.present else now
        with self._tx() as db:
            db.execute("UPDATE restores SET state = ?, ended_at = ?, error = ?, "
                       "owner_pid = COALESCE(?, owner_pid) WHERE restore_id = ?",
                       (state.value, ended, error, owner_pid, restore_id))

    @_guarded
    def restore_intent(self, restore_id: str, step: RestoreStep, now: float, ref: str | None = None) -> int:
        """Durably record a restore step about to be made; returns its id."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO restore_steps(restore_id, step, state, ref, created_at) "
                             "VALUES (?, ?, 'intent', ?, ?)", (restore_id, step.value, ref, now))
            return int(cur.lastrowid or 0)

    @_guarded
    def restore_update(self, step_id: int, state: ActionState, now: float, *,
                       ref: str | None = None, error: str | None = None) -> None:
        done_at = now if state is ActionState.DONE else None
        closed_at = now if state is ActionState.CLOSED else None
        with self._tx() as db:
            db.execute("UPDATE restore_steps SET state = ?, ref = COALESCE(?, ref), "
                       "error = COALESCE(?, error), done_at = COALESCE(?, done_at), "
                       "closed_at = COALESCE(?, closed_at) WHERE id = ?",
                       (state.value, ref, error, done_at, closed_at, step_id))

    @_guarded
    def restore(self, restore_id: str) -> RestoreRecord | None:
        if not self._has("restores"):   # an older journal, opened read-only
            return None
        rows = self._rows("SELECT * FROM restores WHERE restore_id = ?", (restore_id,))
        return self._restore(rows[0]) if rows else None

    @_guarded
    def restores(self, limit: int = 50, present_only: bool = False) -> list[RestoreRecord]:
        """Newest first; ``present_only``: those that may still have something to take away."""
        if not self._has("restores"):
            return []
        where = " WHERE state IN ('restoring', 'restored', 'cleaning')" if present_only else ""
        rows = self._rows(f"SELECT * FROM restores{where} ORDER BY started_at DESC LIMIT ?", (limit,))  # noqa: S608
        return [self._restore(r) for r in rows]

    def _restore(self, row: sqlite3.Row) -> RestoreRecord:
        steps = self._rows("SELECT * FROM restore_steps WHERE restore_id = ? ORDER BY id",
                           (row["restore_id"],))
        return RestoreRecord(
            restore_id=row["restore_id"], run_id=row["run_id"], snapshot=row["snapshot"],
            vm_name=row["vm_name"], new_name=row["new_name"], state=RestoreState(row["state"]),
            owner_pid=row["owner_pid"], started_at=row["started_at"], ended_at=row["ended_at"],
            plan=_load(row["plan"]) or {}, error=row["error"],
            steps=tuple(RestoreStepRecord(
                id=s["id"], restore_id=s["restore_id"], step=RestoreStep(s["step"]),
                state=ActionState(s["state"]), ref=s["ref"], error=s["error"], created_at=s["created_at"],
                done_at=s["done_at"], closed_at=s["closed_at"]) for s in steps))


def _dump(document: dict[str, Any]) -> bytes:
    # A 500-VM manifest is ~10x smaller compressed; the journal keeps many of them.
    return zlib.compress(json.dumps(document, sort_keys=True).encode(), 6)


def _load(value: bytes | str | None) -> dict[str, Any] | None:
    if not value:
        return None
    return json.loads(zlib.decompress(value) if isinstance(value, bytes) else value)


def _column(row: sqlite3.Row, name: str) -> Any:
    """A column an older journal, opened read-only, does not have yet: None."""
    return row[name] if name in row.keys() else None  # noqa: SIM118 - a Row's "in" looks at values


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(run_id=row["run_id"], dataset=row["dataset"], recursive=bool(row["recursive"]),
                     snapshot=row["snapshot"], state=row["state"], owner_pid=row["owner_pid"],
                     started_at=row["started_at"], ended_at=row["ended_at"],
                     context=_load(row["context"]), manifest=_load(row["manifest"]),
                     hook_key=_column(row, "hook_key"), live_until=_column(row, "live_until"))


def _action(row: sqlite3.Row) -> ActionRecord:
    kind = ActionKind(row["kind"])
    return ActionRecord(
        id=row["id"], run_id=row["run_id"], endpoint_id=row["endpoint_id"], vm_moref=row["vm_moref"],
        vm_name=row["vm_name"], kind=kind, strategy=Strategy(_column(row, "strategy") or UNDO_BY_KIND[kind]),
        state=ActionState(row["state"]), snapshot_name=row["snapshot_name"],
        snapshot_moref=row["snapshot_moref"], error=row["error"], created_at=row["created_at"],
        done_at=row["done_at"], closed_at=row["closed_at"])
