"""Ending a run begun elsewhere (a pre hook, a TrueNAS begin hook), then labelling the
snapshot the scheduler took: the undo always comes first, the label is best effort."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..engine.coordinator import Coordinator

log = logging.getLogger(__name__)


def end_and_label(coordinator: Coordinator, run_id: str, snapshot: str | None,
                  label: Callable[[str, dict[str, str]], None]) -> dict[str, Any]:
    """End the run (recording ``snapshot`` as the one it made); then put the run's
    properties on that snapshot."""
    report = coordinator.end(run_id, snapshot)
    if snapshot:
        try:
            label(snapshot, report["properties"])
        except Exception as exc:  # noqa: BLE001 - a label is worth a line, never a lost undo
            log.warning("run %s: could not label %s: %s", run_id, snapshot, exc)
            report.setdefault("warnings", []).append(f"the snapshot {snapshot} could not be labelled: {exc}")
    return report
