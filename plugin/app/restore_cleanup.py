"""The other end of a restore: list them, clean one up, and finish or undo the restores a
dead process left (reconcile).

Cleanup takes away everything a restore made, last made first: a disk attached to another
VM is detached, the copy powered off (only when forced: a running copy may be in use) and
unregistered, the datastore unmounted, the share removed and the clone destroyed (after its
origin is read back). Reconcile's choice for a restore whose process died: before the VM
was registered, everything made is taken away (a clone and a datastore with no VM are of no
use, and nobody saw a result); once registered, the revert and the NIC setting are
finished and the copy stays, powered off, for the user to clean up (reconcile never starts
a VM).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..domain.errors import InvalidInput
from ..domain.model import PowerState
from ..domain.restore import RestorePlan, RestoreState, RestoreStep
from ..engine.journal import ActionState, RestoreRecord
from ..engine.ports import describe
from ..engine.reconcile import process_alive
from .restore import finish
from .restore_steps import (
    Progress,
    RestoreFailed,
    RestoreParts,
    RestoreResult,
    finish_state,
    no_progress,
    record_of,
    restored_vm,
    take_away,
)


def list_restores(parts: RestoreParts, limit: int = 50) -> list[dict[str, Any]]:
    return [RestoreResult.of(r).to_dict() | {"started_at": r.started_at, "ended_at": r.ended_at}
            for r in parts.journal.restores(limit)]


def cleanup(parts: RestoreParts, restore_id: str, force: bool = False,
            progress: Progress = no_progress) -> RestoreResult:
    """Take the restore away; refuses (``InvalidInput``, nothing done) while its copy is
    powered on, unless ``force``. Raises ``RestoreFailed`` naming what could not be taken away."""
    record = record_of(parts.journal, restore_id)
    if not record.state.present:
        return RestoreResult.of(record, ("nothing left to clean up",))
    plan = RestorePlan.from_dict(record.plan)
    hv = parts.open_endpoint(plan.endpoint_id)
    try:
        vm = restored_vm(hv, record)
        layout = hv.layout(vm) if vm else None
        if layout is not None and layout.power_state is not PowerState.OFF and not force:
            raise InvalidInput.single("--force", f"{plan.new_name} is {layout.power_state.value}: power it "
                                                 "off first, or give --force to power it off")
        parts.journal.set_restore_state(restore_id, RestoreState.CLEANING, parts.clock(),
                                        owner_pid=os.getpid())
        progress(10, f"cleaning up restore {restore_id} ({plan.new_name})")
        problems = take_away(parts, hv, record_of(parts.journal, restore_id), force)
    finally:
        hv.close()
    record = finish_state(parts, record, problems, RestoreState.CLEANED)
    if problems:
        raise RestoreFailed(f"restore {restore_id}: not cleaned up: {'; '.join(problems)}; run cleanup again",
                            RestoreResult.of(record))
    progress(100, f"restore {restore_id} cleaned up: no VM, datastore, share or clone is left")
    return RestoreResult.of(record)


def reconcile_restores(parts: RestoreParts) -> list[dict[str, Any]]:
    """Finish or undo the restores whose process died (see the module's docstring)."""
    out = []
    for record in parts.journal.restores(limit=1000, present_only=True):
        if record.state is RestoreState.RESTORED or (record.owner_pid and process_alive(record.owner_pid)):
            continue   # nothing open, or its process is still at it
        plan = RestorePlan.from_dict(record.plan)
        try:
            hv = parts.open_endpoint(plan.endpoint_id)
        except Exception as exc:  # noqa: BLE001 - tried again next time
            out.append({"restore_id": record.restore_id, "result": f"endpoint unavailable: {describe(exc)}"})
            continue
        try:
            out.append({"restore_id": record.restore_id, "result": _settle(parts, hv, record, plan)})
        except Exception as exc:  # noqa: BLE001 - left as it is, tried again next time
            out.append({"restore_id": record.restore_id, "result": f"failed: {describe(exc)}"})
        finally:
            hv.close()
    return out


def _settle(parts: RestoreParts, hv: Any, record: RestoreRecord, plan: RestorePlan) -> str:
    vm = restored_vm(hv, record)
    if record.state is RestoreState.RESTORING and vm is not None:
        step = record.made(RestoreStep.REGISTER)
        if step is not None and step.state is ActionState.INTENT:
            parts.journal.restore_update(step.id, ActionState.DONE, parts.clock(), ref=vm)
        done = {s.step for s in record.steps if s.state is ActionState.DONE}
        finish(parts, hv, plan if RestoreStep.REVERT not in done else _without_revert(plan), no_progress,
               vm=vm, power_on=False)
        parts.journal.set_restore_state(
            record.restore_id, RestoreState.RESTORED, parts.clock(),
            error="interrupted after registration: finished by reconcile (not powered on)")
        return f"finished: {plan.new_name} registered and reverted, powered off"
    problems = take_away(parts, hv, record, force=False)
    final = RestoreState.UNDONE if record.state is RestoreState.RESTORING else RestoreState.CLEANED
    finish_state(parts, record, problems, final,
                 error="interrupted before registration: undone by reconcile"
                 if final is RestoreState.UNDONE else None)
    return f"left open: {'; '.join(problems)}" if problems else (
        "undone: interrupted before registration" if final is RestoreState.UNDONE else "cleaned up")


def _without_revert(plan: RestorePlan) -> RestorePlan:
    return dataclasses.replace(plan, revert_to=None)
