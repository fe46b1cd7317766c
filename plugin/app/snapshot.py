"""A manual coordinated snapshot: finish what an earlier crash left, then begin -> ZFS
snapshot -> end, and the snapshot relabelled when end found out something begin did not
know (a guest thawed before the end was not frozen through the snapshot)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..engine.coordinator import Coordinator

log = logging.getLogger(__name__)


def default_name(now: float | None = None) -> str:
    return time.strftime("vmware-coord-%Y%m%d-%H%M%S", time.localtime(now))


def coordinated_snapshot(coordinator: Coordinator, dataset: str,
                         take_snapshot: Callable[[dict[str, str]], str], recursive: bool = False,
                         exclude: Iterable[str] = (),
                         label: Callable[[str, dict[str, str]], None] | None = None) -> dict[str, Any]:
    """``label(snapshot, properties)`` relabels the snapshot (and, recursive, its children).

    The ZFS snapshot waits at most the begin deadline in all: a third of it for finishing
    what dead runs left (a hung vCenter holds nothing longer), the rest for the begin."""
    started = time.monotonic()
    limit = coordinator.config.begin_deadline_s
    try:
        coordinator.reconcile(sweep=False, deadline_s=limit / 3)
    except TimeoutError:   # another reconcile holds the journal: it finishes what is left
        log.info("reconcile is busy elsewhere; not waiting for it")
    given: dict[str, str] = {}

    def take(properties: dict[str, str]) -> str:
        given.update(properties)
        return take_snapshot(properties)

    report = coordinator.run(dataset, take, recursive, exclude,
                             deadline_s=limit - (time.monotonic() - started))
    if label is not None and report.get("snapshot") and report["properties"] != given:
        try:
            label(report["snapshot"], report["properties"])
        except Exception as exc:  # noqa: BLE001 - the report says it; the undo is done already
            log.warning("relabelling %s failed: %s", report["snapshot"], exc)
            report["warnings"].append(f"{report['snapshot']} still carries the properties of the begin "
                                      f"phase ({exc}); this report is the true one")
    return report
