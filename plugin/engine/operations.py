"""The engine's side of the strategies' ``Operations`` and ``UndoOperations``: each one
bounded by a deadline, against one VM of one endpoint. The journal row that covers an
operation is written by the phase before the strategy runs (begin.py, end.py)."""

from __future__ import annotations

import time

from ..domain.model import PowerState
from ..domain.strategies.base import Step
from ..domain.strategies.options import VssContext
from .calls import call_and_wait
from .ports import Hypervisor, SnapshotRequest, describe, guests


class VmOperations:
    """For one rung of one VM in begin."""

    def __init__(self, hv: Hypervisor, vm_moref: str, snapshot_name: str | None, description: str,
                 deadline: float) -> None:
        self._hv = hv
        self._vm = vm_moref
        self._name = snapshot_name
        self._description = description
        self._deadline = deadline

    def remaining_s(self) -> float:
        return self._deadline - time.monotonic()

    def snapshot(self, *, memory: bool, quiesce: bool, quiesce_timeout_minutes: int | None,
                 vss_context: VssContext | None) -> Step:
        request = SnapshotRequest(vm_moref=self._vm, name=self._name or "", description=self._description,
                                  memory=memory, quiesce=quiesce,
                                  quiesce_timeout_minutes=quiesce_timeout_minutes, vss_context=vss_context)
        return call_and_wait(self._hv, lambda: self._hv.start_snapshot(request), self._deadline)

    def shutdown_guest(self, timeout_s: float) -> Step:
        try:
            if self._hv.shutdown_guest(self._vm, timeout_s):
                return Step("ok")
        except Exception as exc:  # noqa: BLE001 - e.g. Tools unavailable: maybe a hard power-off next
            return Step("failed", fault_type=getattr(exc, "fault_type", None), message=describe(exc))
        return Step("timed_out")

    def power_off(self) -> Step:
        return call_and_wait(self._hv, lambda: self._hv.start_power_off(self._vm), self._deadline)

    def suspend(self) -> Step:
        return call_and_wait(self._hv, lambda: self._hv.start_suspend(self._vm), self._deadline)

    def freeze(self) -> Step:
        return call_and_wait(self._hv, lambda: guests(self._hv).start_freeze(self._vm), self._deadline)

    def pause(self) -> Step:
        return call_and_wait(self._hv, lambda: guests(self._hv).start_pause(self._vm), self._deadline)


class UndoVmOperations:
    """For undoing one journaled action of one VM in end or reconcile."""

    def __init__(self, hv: Hypervisor, vm_moref: str, deadline: float) -> None:
        self._hv = hv
        self._vm = vm_moref
        self._deadline = deadline

    def remove_snapshot(self, snapshot_id: str) -> Step:
        return call_and_wait(self._hv, lambda: self._hv.start_remove(snapshot_id), self._deadline)

    def snapshot_present(self, snapshot_id: str) -> bool | None:
        try:
            state = self._hv.vm_states([self._vm]).get(self._vm)
        except Exception:  # noqa: BLE001 - unknown: the caller keeps the action open
            return None
        if state is None:
            return None   # the VM was not found: nothing can be said of its snapshots
        return any(s.moref == snapshot_id for s in state.snapshots)

    def power_state(self) -> PowerState | None:
        try:
            state = self._hv.vm_states([self._vm]).get(self._vm)
        except Exception:  # noqa: BLE001 - unknown: powering on is tried, and says what happened
            return None
        return state.power_state if state is not None else None

    def power_on(self) -> Step:
        return call_and_wait(self._hv, lambda: self._hv.start_power_on(self._vm), self._deadline)

    def thaw(self) -> Step:
        return call_and_wait(self._hv, lambda: guests(self._hv).start_thaw(self._vm), self._deadline)

    def resume(self) -> Step:
        return call_and_wait(self._hv, lambda: guests(self._hv).start_resume(self._vm), self._deadline)
