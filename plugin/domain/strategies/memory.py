"""memory: a VMware snapshot with the VM's memory, not quiesced (it resumes exactly)."""

from __future__ import annotations

from ..model import BlockerKind, Consistency, Strategy
from .base import Operations, Step
from .options import LadderOptions
from .snapshot import SNAPSHOT_BLOCKERS, VmwareSnapshot


class Memory(VmwareSnapshot):
    name = Strategy.MEMORY
    yields = Consistency.MEMORY
    summary = "snapshot with memory, not quiesced"
    pruned_by = {**SNAPSHOT_BLOCKERS, BlockerKind.NO_MEMORY_CAPABILITY: "{blocker}",
                 BlockerKind.INDEPENDENT_DISK:
                     "{blocker}; VMware refuses memory snapshots of VMs with independent disks"}

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        return ops.snapshot(memory=True, quiesce=False, quiesce_timeout_minutes=None, vss_context=None)
