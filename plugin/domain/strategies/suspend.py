"""suspend: suspend the VM around the ZFS snapshot, resume it afterwards."""

from __future__ import annotations

from ..model import BlockerKind, Consistency, Strategy
from .base import ActionKind, Operations, Step
from .options import LadderOptions
from .power import StopsTheVm


class Suspend(StopsTheVm):
    name = Strategy.SUSPEND
    yields = Consistency.POWERED_OFF
    summary = "suspend and resume"
    # DirectPath I/O, SR-IOV and Fault Tolerance VMs cannot be suspended.
    pruned_by = {kind: "{blocker}" for kind in (
        BlockerKind.PASSTHROUGH, BlockerKind.SRIOV, BlockerKind.FAULT_TOLERANCE)}
    privileges = {"VirtualMachine.Interact.Suspend": "suspend VMs",
                  "VirtualMachine.Interact.PowerOn": "power VMs on again"}
    action = ActionKind.SUSPEND

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        return ops.suspend()
