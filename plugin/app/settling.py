"""Creates whose answer was lost: looked at again until they are found (and removed) or
their window passed. A create call that timed out may still land on VMware after the run
ended; end keeps its journal row open for ``in_doubt_window_s``, and every way in runs
this afterwards, so such a snapshot is removed within seconds, not at the next
reconcile interval."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..domain.strategies.base import ActionKind
from ..engine.coordinator import Coordinator
from ..engine.journal import Journal


def in_doubt(journal: Journal) -> list[str]:
    return [a.vm_name for a in journal.actions(open_only=True)
            if a.kind is ActionKind.SNAPSHOT and not a.snapshot_moref]


def settle(coordinator: Coordinator, poll_s: float = 2.0,
           sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Reconcile until nothing is in doubt or the window passed; what is still in doubt.

    An endpoint that cannot be reached is not waited for: a create cannot be looked for
    there now, and reconcile (cron, the next run) looks once it is back."""
    deadline = time.monotonic() + coordinator.config.in_doubt_window_s + poll_s
    while True:
        left = in_doubt(coordinator.journal)
        if not left or time.monotonic() >= deadline:
            return left
        sleep(poll_s)
        if coordinator.reconcile(sweep=False)["unreachable"]:
            return in_doubt(coordinator.journal)
