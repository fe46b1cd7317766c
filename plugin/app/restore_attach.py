"""Attach one disk of a restored copy to another VM, for file-level restore.

Read-only by default: the disk is attached ``independent_nonpersistent``, so what the other
VM writes to it is thrown away at its power-off and the copy stays as the snapshot had it;
``writable`` attaches it ``independent_persistent``. The attachment is journaled as a step of
the restore, and its cleanup detaches it before anything else goes.
"""

from __future__ import annotations

from ..domain.errors import InvalidInput
from ..domain.restore import RestorePlan, RestoreState, RestoreStep
from .restore_steps import RestoreParts, RestoreResult, journaled, record_of, restored_vm


def attach_disk(parts: RestoreParts, restore_id: str, disk: int, to_vm: str,
                writable: bool = False) -> RestoreResult:
    record = record_of(parts.journal, restore_id)
    if record.state is not RestoreState.RESTORED:
        raise InvalidInput.single("restore", f"restore {restore_id} is {record.state.value}, not restored")
    plan = RestorePlan.from_dict(record.plan)
    hv = parts.open_endpoint(plan.endpoint_id)
    try:
        vm = restored_vm(hv, record)
        layout = hv.layout(vm) if vm else None
        if layout is None:
            raise InvalidInput.single("restore", f"{plan.new_name} of restore {restore_id} is not registered "
                                                 "any more")
        if not 0 <= disk < len(layout.disks):
            raise InvalidInput.single("--disk", f"{plan.new_name} has {len(layout.disks)} disk(s): give 0 to "
                                                f"{len(layout.disks) - 1}")
        target = hv.find_vm(to_vm)
        target_layout = hv.layout(target) if target else None
        if target is None or target_layout is None:
            raise InvalidInput.single("--to", f"no VM named '{to_vm}'")
        if target == vm:
            raise InvalidInput.single("--to", "give another VM than the restored copy itself")
        if target_layout.host != plan.host_moref:
            raise InvalidInput.single("--to", f"'{to_vm}' runs on another host than {plan.host_name}, the "
                                              f"only one that mounts {plan.datastore}")
        path = layout.disks[disk]
        journaled(parts, restore_id, RestoreStep.ATTACH, lambda: hv.attach_disk(path, target, writable),
                  f"{target} {path}")
    finally:
        hv.close()
    mode = "writable" if writable else "read-only (independent, non-persistent)"
    return RestoreResult.of(record_of(parts.journal, restore_id), (f"{path} attached to {to_vm}, {mode}",))
