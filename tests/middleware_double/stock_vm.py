"""The stock ``middlewared.plugins.vm`` as far as the plugin depends on its shape: TrueNAS's own
pause of its VMs around snapshots.

At TS-25.10.6: ``plugins/vm/attachments.py:32-35`` ``periodic_snapshot_task_begin(self,
task_id)`` (the running VMs with a disk on the task's dataset, by VM id) and
``plugins/vm/vm_lifecycle.py:139-161`` ``suspend_vms(self, vm_ids)`` /
``resume_suspended_vms(self, vm_ids)``, all ``@private``; the Config of the ``vm`` namespace is
``plugins/vm/vms.py:76-83``'s. Bodies do not talk to libvirt: ``VMS_ON`` says which VM ids
stock would find on a dataset, and each call is recorded in ``STOCK_CALLS`` with the ids
it was given (so a test sees which VMs the stock pause was left).
"""

from __future__ import annotations

import types
from typing import Any

STOCK_CALLS: list[tuple[str, tuple]] = []
VMS_ON: dict[str, list[int]] = {}    # dataset -> the VM ids stock's attachment query finds there


def build(shape: str = "25.10") -> types.ModuleType:
    """A fresh ``middlewared.plugins.vm.vm_lifecycle`` ("25.10", or "changed" for a drifted one)."""
    from middlewared.service import Service, private

    mod = types.ModuleType("middlewared.plugins.vm.vm_lifecycle")

    class VMService(Service):
        class Config:
            namespace = "vm"
            cli_namespace = "service.vm"

        @private
        def periodic_snapshot_task_begin(self, task_id: int) -> dict[int, list[Any]]:
            task = self.middleware.call_sync("pool.snapshottask.query", [["id", "=", task_id]], {"get": True})
            task = task.model_dump() if hasattr(task, "model_dump") else task
            return {vm_id: [] for vm_id in VMS_ON.get(task["dataset"], [])}

        @private
        def suspend_vms(self, vm_ids):
            STOCK_CALLS.append(("suspend_vms", tuple(vm_ids)))

        @private
        def resume_suspended_vms(self, vm_ids):
            STOCK_CALLS.append(("resume_suspended_vms", tuple(vm_ids)))

    if shape == "changed":
        def suspend_vms(self, vm_ids, options=None):
            STOCK_CALLS.append(("suspend_vms", tuple(vm_ids)))
        VMService.suspend_vms = private(suspend_vms)

    mod.VMService = VMService
    return mod
