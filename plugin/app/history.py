"""Reading what runs did: the run list, and one run's manifest by run id or snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.journal import Journal, RunRecord

RUN_FIELDS = ("run_id", "dataset", "snapshot", "state", "started_at", "ended_at")


def run_summary(record: RunRecord) -> dict[str, Any]:
    return {k: getattr(record, k) for k in RUN_FIELDS} | {"vmsynced": record.document.get("vmsynced")}


def runs(journal: Journal, limit: int) -> list[dict[str, Any]]:
    """Recent runs, newest first."""
    return [run_summary(r) for r in journal.runs(limit)]


def find_run(journal: Journal, key: str,
             run_property: Callable[[str], str | None] | None = None) -> RunRecord | None:
    """A run by its id, or by a snapshot ``dataset@name`` it made. ``run_property`` reads the
    run id a snapshot carries, for snapshots this journal did not record (replicated,
    labelled elsewhere)."""
    if "@" not in key:
        return journal.run(key)
    record = journal.run_for_snapshot(key)
    if record is None and run_property is not None:
        run_id = run_property(key)
        record = journal.run(run_id) if run_id else None
    return record
