"""What every restore use case shares: its parts, its result, one journaled step, and the
undo of what a restore made (cleanup, a failed restore, reconcile).

Each side effect is journaled before it is made (``intent``), marked ``done`` with what it
made (the clone's name, the share, a moref) or ``failed``, and ``closed`` once taken away.
A step whose outcome is unknown (the process died during the call) is looked up by the
name the plan gave it: the clone, the datastore and the VM all have names fixed before the
first step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..domain.errors import InvalidInput
from ..domain.model import PowerState
from ..domain.restore import UNDONE_IN_ORDER, RestorePlan, RestoreState, RestoreStep, Transport, parse_lun_ref
from ..engine.journal import ActionState, Journal, RestoreRecord, RestoreStepRecord
from ..engine.ports import Gone, HypervisorFailure, NoAnswer, describe
from ..zfs import clone as zfs_clone
from ..zfs.shell import Shell
from .restore_ports import LunExport, RestoreHypervisor, Sharing

Progress = Callable[[int, str], None]   # (percent, what is being done), as middlewared jobs take it


def no_progress(_percent: int, _description: str) -> None:
    """The default progress callback."""


@dataclasses.dataclass
class RestoreParts:
    journal: Journal
    shell: Shell
    sharing: Sharing
    open_endpoint: Callable[[str], RestoreHypervisor]
    nas_addresses: tuple[str, ...]
    luns: LunExport
    clock: Callable[[], float] = time.time
    power_on_timeout_s: float = 300.0


class RestoreFailed(Exception):
    """A step failed; ``result`` says what was taken away again and what is left."""

    def __init__(self, message: str, result: RestoreResult) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """A restore as the journal has it, for people and the API."""

    restore_id: str
    state: RestoreState
    plan: RestorePlan
    vm_moref: str | None
    datastore_moref: str | None
    steps: tuple[RestoreStepRecord, ...]
    error: str | None = None
    notes: tuple[str, ...] = ()

    @staticmethod
    def of(record: RestoreRecord, notes: tuple[str, ...] = ()) -> RestoreResult:
        made = {s.step: s.ref for s in record.steps if s.state is ActionState.DONE}
        return RestoreResult(record.restore_id, record.state, RestorePlan.from_dict(record.plan),
                             made.get(RestoreStep.REGISTER), made.get(RestoreStep.DATASTORE),
                             record.steps, record.error, notes)

    def to_dict(self) -> dict[str, Any]:
        return {"restore_id": self.restore_id, "state": self.state.value, "plan": self.plan.to_dict(),
                "vm_moref": self.vm_moref, "datastore_moref": self.datastore_moref,
                "error": self.error, "notes": list(self.notes),
                "steps": [{"step": s.step.value, "state": s.state.value, "ref": s.ref, "error": s.error}
                          for s in self.steps]}


def record_of(journal: Journal, restore_id: str) -> RestoreRecord:
    record = journal.restore(restore_id)
    if record is None:
        raise InvalidInput.single("restore", f"no restore {restore_id!r} in the journal ('restore list')")
    return record


def journaled(parts: RestoreParts, restore_id: str, step: RestoreStep, action: Callable[[], str | None],
              ref: str | None = None) -> str | None:
    """Journal the intent, make the side effect, journal what it made (or why it failed)."""
    step_id = parts.journal.restore_intent(restore_id, step, parts.clock(), ref)
    try:
        made = action()
    except Exception as exc:
        # No answer: it may still have been made, so the row stays an intent for the undo.
        state = ActionState.INTENT if isinstance(exc, NoAnswer) else ActionState.FAILED
        parts.journal.restore_update(step_id, state, parts.clock(), error=describe(exc))
        raise
    parts.journal.restore_update(step_id, ActionState.DONE, parts.clock(), ref=made or ref)
    return made or ref


def restored_vm(hv: RestoreHypervisor, record: RestoreRecord) -> str | None:
    """The restored VM's moref: as journaled, or, when its registration's answer was lost,
    the VM of the planned name whose .vmx is on the restore's datastore."""
    step = record.made(RestoreStep.REGISTER)
    if step is None:
        return None
    if step.state is ActionState.DONE and step.ref:
        return step.ref
    plan = RestorePlan.from_dict(record.plan)
    moref = hv.find_vm(plan.new_name)
    layout = hv.layout(moref) if moref else None
    return moref if layout and layout.vmx_path.startswith(f"[{plan.datastore}]") else None


def take_away(parts: RestoreParts, hv: RestoreHypervisor, record: RestoreRecord, force: bool) -> list[str]:
    """Undo every step the restore made, last made first; returns what could not be undone
    (those rows stay open for the next cleanup or reconcile). A powered-on copy is powered
    off only with ``force``."""
    plan = RestorePlan.from_dict(record.plan)
    problems: list[str] = []
    vm = restored_vm(hv, record)
    shared = record.made(RestoreStep.SHARE)
    lun = parse_lun_ref(shared.ref or "")[1] if shared is not None else ""
    for kind in UNDONE_IN_ORDER:
        for step in [s for s in record.steps if s.step is kind and s.state.open]:
            try:
                _undo(parts, hv, plan, step, vm, force, lun)
            except Exception as exc:  # noqa: BLE001 - the rest still goes; this row stays open
                problems.append(f"{kind.value}: {describe(exc)}")
                parts.journal.restore_update(step.id, ActionState.UNDO_FAILED, parts.clock(),
                                             error=describe(exc))
                if kind in (RestoreStep.POWER_ON, RestoreStep.REGISTER, RestoreStep.DATASTORE):
                    return problems   # the datastore cannot go while the VM is on it, nor the share
            else:
                parts.journal.restore_update(step.id, ActionState.CLOSED, parts.clock())
    return problems


def _undo(parts: RestoreParts, hv: RestoreHypervisor, plan: RestorePlan, step: RestoreStepRecord,
          vm: str | None, force: bool, lun: str) -> None:
    if step.step is RestoreStep.ATTACH and step.ref:
        to_vm, _, disk = step.ref.partition(" ")
        hv.detach_disk(disk, to_vm)
    elif step.step in (RestoreStep.POWER_ON, RestoreStep.REGISTER) and vm:
        layout = hv.layout(vm)
        if layout is None:
            return
        if layout.power_state is not PowerState.OFF:
            if not force:
                raise InvalidInput.single("--force", f"{plan.new_name} is {layout.power_state.value}: "
                                                     "power it off first, or give --force to power it off")
            hv.power_off(vm)
        if step.step is RestoreStep.REGISTER:
            with contextlib.suppress(Gone):
                hv.unregister(vm)
    elif step.step is RestoreStep.DATASTORE:
        # By its name, unique since the plan checked it; a VMFS copy resignatured but not yet
        # renamed has ESXi's name ("snap-…"), so it is found by its LUN instead.
        moref = hv.find_datastore(plan.datastore) or (lun and hv.find_datastore_on(lun))
        if moref:
            with contextlib.suppress(Gone):
                hv.unmount(plan.host_moref, moref)
    elif step.step is RestoreStep.SHARE and plan.transport is Transport.VMFS:
        extent, _ = parse_lun_ref(step.ref or "")
        parts.luns.unexpose(extent or plan.clone)
        # Each host that discovered the LUN drops it, gone, at its next rescan: made sooner here.
        seeing = [h.moref for h in hv.hosts() if lun and lun in h.luns] or [plan.host_moref]
        for host in seeing:
            with contextlib.suppress(HypervisorFailure):
                hv.rescan(host)
    elif step.step is RestoreStep.SHARE:
        parts.sharing.unshare(step.ref or plan.clone)
    elif step.step is RestoreStep.CLONE:
        zfs_clone.destroy_clone(parts.shell, plan.clone, plan.snapshot)


def finish_state(parts: RestoreParts, record: RestoreRecord, problems: list[str], done: RestoreState,
                 error: str | None = None) -> RestoreRecord:
    """Record where a take-away ended: ``done`` when nothing is left, else still cleaning."""
    state = done if not problems else RestoreState.CLEANING
    parts.journal.set_restore_state(record.restore_id, state, parts.clock(),
                                    error="; ".join(problems) if problems else error)
    return record_of(parts.journal, record.restore_id)
