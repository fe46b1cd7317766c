"""Ending a run begun elsewhere (a TrueNAS begin hook), then labelling the snapshots the
scheduler took: the undo always comes first, the labels are best effort."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.coordinator import Coordinator
from ..engine.journal import JournalError

log = logging.getLogger(__name__)


def end_and_label(coordinator: Coordinator, run_id: str, snapshots: Sequence[str],
                  label: Callable[[str, dict[str, str]], None], notes: Sequence[str] = ()) -> dict[str, Any]:
    """End the run (its first snapshot recorded as the one it made, ``notes`` in its
    manifest); then put the run's properties on every snapshot it made (a recursive
    snapshot's children too)."""
    report = coordinator.end(run_id, snapshots[0] if snapshots else None, notes)
    warnings = report.setdefault("warnings", [])
    for snapshot in snapshots:
        try:
            label(snapshot, report["properties"])
        except Exception as exc:  # noqa: BLE001 - a label is worth a line, never a lost undo
            log.warning("run %s: could not label %s: %s", run_id, snapshot, exc)
            warnings.append(f"the snapshot {snapshot} could not be labelled: {exc}")
            continue
        try:
            coordinator.journal.set_snapshot(run_id, snapshot)
        except JournalError as exc:
            warnings.append(str(exc))
    report["snapshots"] = list(snapshots)
    return report
