"""What the two VMware-snapshot strategies (quiesce, memory) share: what rules a VMware
snapshot out, its privileges, and its undo (removal of exactly that snapshot)."""

from __future__ import annotations

from collections.abc import Mapping

from ..model import BlockerKind
from .base import ActionKind, StrategyModule, Undone, UndoOperations

# vsphere.md, "VMs that cannot be snapshotted".
SNAPSHOT_BLOCKERS: Mapping[BlockerKind, str] = {kind: "{blocker}" for kind in (
    BlockerKind.PASSTHROUGH, BlockerKind.VGPU, BlockerKind.SRIOV, BlockerKind.FAULT_TOLERANCE,
    BlockerKind.PHYSICAL_RDM, BlockerKind.BUS_SHARING, BlockerKind.MULTI_WRITER,
    BlockerKind.NVDIMM, BlockerKind.NO_SNAPSHOT_CAPABILITY, BlockerKind.DEEP_SNAPSHOT_CHAIN)}


class VmwareSnapshot(StrategyModule):
    action = ActionKind.SNAPSHOT
    undo_failure = "remove_failed"
    caveats = {
        BlockerKind.INDEPENDENT_DISK: "its data is only crash-consistent in the ZFS snapshot",
        BlockerKind.CONSOLIDATION_NEEDED: "a new VMware snapshot adds to that chain",
    }
    privileges = {"VirtualMachine.State.CreateSnapshot": "create VMware snapshots",
                  "VirtualMachine.State.RemoveSnapshot": "remove VMware snapshots"}

    def undo(self, ops: UndoOperations, snapshot_id: str | None) -> Undone:
        step = ops.remove_snapshot(snapshot_id or "")
        # A removal already in flight (a killed run's) may have finished it meanwhile.
        if step.ok or step.gone or ops.snapshot_present(snapshot_id or "") is False:
            return Undone("removed", closed=True)
        return Undone(self.undo_failure, closed=False, error=step.message)
