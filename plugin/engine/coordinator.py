"""The coordinated snapshot transaction: plan -> begin -> (ZFS snapshot) -> end; reconcile.

Invariants the phases keep (architecture.md):
- the ZFS snapshot is never held back by VMware beyond the begin deadline, and never
  prevented: every VMware failure degrades a VM to crash-consistent with a reason;
- an intent is durable in the journal before each VMware call that creates something, so
  ``end`` or ``reconcile`` removes every snapshot this product created, whatever crashed;
- only snapshots this run created are removed, by managed object, never with children;
- contexts, journal rows and manifests name endpoints by id and never hold a secret.

This class only holds what the phases work with (``Parts``) and hands it to them:
``planning``, ``begin``, ``end``, ``reconcile``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..domain.model import Mapping
from ..domain.policy import DEFAULT_LADDER, DEFAULT_LIBVIRT_LADDER, Ladder, Policy
from ..domain.selection import Plan
from ..domain.storage import StorageFacts
from . import begin as begin_phase
from . import end as end_phase
from . import planning
from . import reconcile as reconcile_phase
from .config import EngineConfig
from .context import RunContext
from .journal import Journal
from .parts import Parts, Progress
from .ports import Connector
from .sessions import SessionPool


class Coordinator:
    """Owns the transaction. Talks to ports only: a Connector, a Journal, a clock."""

    def __init__(self, connector: Connector, journal: Journal, mappings: Sequence[Mapping],
                 storage: Callable[[], StorageFacts], policies: Sequence[Policy] = (),
                 default_ladder: Ladder = DEFAULT_LADDER, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, progress: Progress | None = None,
                 sessions: SessionPool | None = None, libvirt_default_ladder: Ladder = DEFAULT_LIBVIRT_LADDER,
                 local_endpoints: Sequence[str] = ()) -> None:
        """``sessions``: where begin leaves its sessions for end; pass one that outlives this
        coordinator when begin and end arrive as separate calls of one process (TrueNAS).
        ``local_endpoints``: the connector's endpoints whose guests are found by where their
        disks are (libvirt), looked at for every plan whatever the mappings say."""
        self.parts = Parts(connector=connector, journal=journal, mappings=list(mappings), storage=storage,
                           policies=list(policies), default_ladder=default_ladder,
                           config=config or EngineConfig(),
                           clock=clock, progress=progress or (lambda message, outcome: None),
                           sessions=sessions or SessionPool(), libvirt_default_ladder=libvirt_default_ladder,
                           local_endpoints=tuple(local_endpoints))

    @property
    def journal(self) -> Journal:
        return self.parts.journal

    @property
    def config(self) -> EngineConfig:
        return self.parts.config

    def plan(self, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
             policies: Sequence[Policy] | None = None) -> tuple[Plan, dict[str, str]]:
        """The dry run; ``policies`` replaces the configured ones (what an unsaved policy would change)."""
        return planning.plan(self.parts, dataset, recursive, exclude, policies)

    def begin(self, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
              detached: bool = False, run_id: str | None = None, hook_key: str | None = None,
              deadline_s: float | None = None) -> RunContext:
        return begin_phase.begin(self.parts, dataset, recursive, exclude, detached, run_id, hook_key,
                                 deadline_s)

    def end(self, context: RunContext | str, snapshot: str | None = None,
            notes: Iterable[str] = (), problems: dict[str, str] | None = None) -> dict[str, Any]:
        return end_phase.end(self.parts, context, snapshot, notes, problems)

    def run(self, dataset: str, take_snapshot: Callable[[dict[str, str]], str],
            recursive: bool = False, exclude: Iterable[str] = (),
            deadline_s: float | None = None) -> dict[str, Any]:
        """begin -> take_snapshot(properties) -> end. The ZFS snapshot is always attempted."""
        context = self.begin(dataset, recursive, exclude, deadline_s=deadline_s)
        snapshot = ""
        try:
            snapshot = take_snapshot(context.properties())
        finally:
            report = self.end(context, snapshot or None)   # whatever happened to the snapshot
        report["snapshot"] = snapshot or None
        return report

    def reconcile(self, sweep: bool = True, deadline_s: float | None = None) -> dict[str, Any]:
        return reconcile_phase.reconcile(self.parts, sweep, deadline_s)
