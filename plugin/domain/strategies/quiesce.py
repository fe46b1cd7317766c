"""quiesce: a VMware snapshot taken with the guest's file systems (or, on Windows, its
applications through VSS) quiesced by VMware Tools; whether it really was is read back."""

from __future__ import annotations

from ..model import BlockerKind, Consistency, SnapshotFacts, Strategy
from .base import Operations, Step, Verdict
from .options import LadderOptions
from .snapshot import SNAPSHOT_BLOCKERS, VmwareSnapshot


class Quiesce(VmwareSnapshot):
    name = Strategy.QUIESCE
    yields = Consistency.QUIESCED
    summary = "VMware Tools quiesced snapshot"
    pruned_by = {**SNAPSHOT_BLOCKERS, BlockerKind.NO_TOOLS: "{blocker}",
                 BlockerKind.NO_QUIESCE_CAPABILITY: "{blocker}"}
    reads_back = True

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        return ops.snapshot(memory=False, quiesce=True,
                            quiesce_timeout_minutes=options.quiesce_timeout_minutes,
                            vss_context=options.vss_context)

    def verify(self, snapshot: SnapshotFacts | None) -> Verdict | None:
        # VMware silently ignores the quiesce flag when Tools cannot quiesce.
        if snapshot is not None and snapshot.quiesced:
            return None
        if snapshot is not None:
            return Verdict(Consistency.CRASH, "crash-consistent: VMware ignored the quiesce request "
                           "(VMware Tools not running or not able to quiesce)", "ignored")
        return Verdict(Consistency.CRASH,
                       "crash-consistent: whether the snapshot is quiesced could not be read back")
