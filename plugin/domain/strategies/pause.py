"""pause: a libvirt guest's vCPUs paused around the ZFS snapshot and resumed afterwards (what
TrueNAS itself does to its VMs around periodic snapshots).

Honest about what it gives: QEMU drains and flushes its block layer when it stops the
vCPUs, so no write is in flight, but the guest's own caches are not written: its disks are
crash-consistent, at an instant when nothing was half-written.
"""

from __future__ import annotations

from ..model import BlockerKind, Consistency, PowerState, Provider, Strategy
from .base import ActionKind, Operations, Step, StrategyModule, Undone, UndoOperations
from .options import LadderOptions


class Pause(StrategyModule):
    name = Strategy.PAUSE
    yields = Consistency.CRASH
    summary = "libvirt guest paused and resumed (crash-consistent, nothing in flight)"
    providers = frozenset({Provider.LIBVIRT})
    pruned_by = {
        BlockerKind.PASSTHROUGH: "{blocker}: a passed-through device keeps running while the guest's "
                                 "vCPUs are paused, and its driver may time out",
        BlockerKind.GUEST_PAUSED: "{blocker}"}
    action = ActionKind.PAUSE
    undo_failure = "resume_failed"

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        return ops.pause()

    def undo(self, ops: UndoOperations, snapshot_id: str | None) -> Undone:
        if ops.power_state() is PowerState.ON:
            return Undone("still_running", closed=True)   # never paused, or resumed by someone else
        step = ops.resume()
        if step.ok:
            return Undone("resumed", closed=True)
        if step.gone:
            return Undone("not_running", closed=True)
        return Undone(self.undo_failure, closed=False, error=step.message)
