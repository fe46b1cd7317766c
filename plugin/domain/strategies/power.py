"""What the two strategies that stop a VM (power_off, suspend) share: powering it on again."""

from __future__ import annotations

from ..model import PowerState
from .base import StrategyModule, Undone, UndoOperations


class StopsTheVm(StrategyModule):
    undo_failure = "power_on_failed"

    def undo(self, ops: UndoOperations, snapshot_id: str | None) -> Undone:
        if ops.power_state() is PowerState.ON:
            # A shutdown that never happened (refused, or still pending and given up).
            return Undone("still_running", closed=True)
        step = ops.power_on()
        if step.ok:
            return Undone("powered_on", closed=True)
        return Undone(self.undo_failure, closed=False, error=step.message)
