"""The stock ``middlewared.plugins.vmware`` as far as the plugin depends on its shape.

The model, Config and the five hook methods with the decorators and signatures they have at
TS-25.10.6 (``plugins/vmware.py``). Bodies do not talk to VMware: each records that the
*stock* code ran (``STOCK_CALLS``), so a test can tell whether the takeover applied.
``build(shape)`` can also produce a changed shape, to show that the plugin then refuses to
patch.
"""

from __future__ import annotations

import types
from typing import Any

from pydantic import Secret

STOCK_CALLS: list[tuple[str, tuple]] = []


def build(shape: str = "25.10") -> types.ModuleType:
    """A fresh ``middlewared.plugins.vmware`` module ("25.10", or "changed" for a drifted one)."""
    import middlewared.sqlalchemy as sa
    from middlewared.api import api_method
    from middlewared.api.base import BaseModel
    from middlewared.service import CRUDService, job, private

    mod = types.ModuleType("middlewared.plugins.vmware")
    ns: dict[str, Any] = {"__name__": mod.__name__}

    class VMWareEntry(BaseModel):
        id: int
        datastore: str
        filesystem: str
        hostname: str
        password: Secret[str]
        username: str
        state: dict

    VMWareEntry.__module__ = "middlewared.api.v25_10_5.vmware"

    class VMWarePeriodicSnapshotTaskProceedArgs(BaseModel):
        context: Secret[Any]

    class VMWarePeriodicSnapshotTaskProceedResult(BaseModel):
        result: Any

    class VMWarePeriodicSnapshotTaskEndArgs(BaseModel):
        context: Secret[Any]

    class VMWarePeriodicSnapshotTaskEndResult(BaseModel):
        result: Any

    for model in (VMWarePeriodicSnapshotTaskProceedArgs, VMWarePeriodicSnapshotTaskProceedResult,
                  VMWarePeriodicSnapshotTaskEndArgs, VMWarePeriodicSnapshotTaskEndResult):
        model.__module__ = mod.__name__

    table = "storage_vmwareplugin"
    if table not in sa.Model.metadata.tables:
        class VMWareModel(sa.Model):
            __tablename__ = table
            id = sa.Column(sa.Integer(), primary_key=True)
            hostname = sa.Column(sa.String(200))
            username = sa.Column(sa.String(200))
            password = sa.Column(sa.EncryptedText())
            filesystem = sa.Column(sa.String(200))
            datastore = sa.Column(sa.String(200))
            state = sa.Column(sa.JSON(dict))   # 26.0 spells it so (plugins/vmware.py:58); 25.10 accepts it
        ns["VMWareModel"] = VMWareModel

    class VMWareService(CRUDService):
        class Config:
            datastore = "storage.vmwareplugin"
            cli_namespace = "storage.vmware"
            entry = VMWareEntry
            role_prefix = "SNAPSHOT_TASK"

        def _dataset_get_vms(self, dataset, recursive):
            f = ["filesystem", "=", dataset]
            if recursive:
                f = ["OR", [f, ["filesystem", "^", dataset + "/"]]]
            return self.middleware.call_sync("vmware.query", [f])

        @private
        def snapshot_begin(self, dataset, recursive):
            STOCK_CALLS.append(("snapshot_begin", (dataset, recursive)))
            qs = self._dataset_get_vms(dataset, recursive)
            return {"vmsnapname": "stock", "vmsnapobjs": [{"vmsnapobj": q} for q in qs], "vmsynced": bool(qs)}

        @private
        def snapshot_end(self, context):
            STOCK_CALLS.append(("snapshot_end", (context,)))

        @private
        def periodic_snapshot_task_begin(self, task_id):
            STOCK_CALLS.append(("periodic_snapshot_task_begin", (task_id,)))
            task = self.middleware.call_sync("pool.snapshottask.query", [["id", "=", task_id]], {"get": True})
            qs = self._dataset_get_vms(task["dataset"], task["recursive"])
            return {"dataset": task["dataset"], "qs": qs} if qs else None

        @api_method(VMWarePeriodicSnapshotTaskProceedArgs, VMWarePeriodicSnapshotTaskProceedResult,
                    private=True)
        @job()
        def periodic_snapshot_task_proceed(self, job, context):
            STOCK_CALLS.append(("periodic_snapshot_task_proceed", (context,)))
            return {"vmsnapname": "stock", "vmsnapobjs": [], "vmsynced": True}

        @api_method(VMWarePeriodicSnapshotTaskEndArgs, VMWarePeriodicSnapshotTaskEndResult, private=True)
        @job()
        def periodic_snapshot_task_end(self, job, context):
            STOCK_CALLS.append(("periodic_snapshot_task_end", (context,)))

    if shape == "changed":
        # A future release renaming a parameter: the plugin must leave such a class alone.
        def periodic_snapshot_task_begin(self, task_id, options=None):
            STOCK_CALLS.append(("periodic_snapshot_task_begin", (task_id,)))
        VMWareService.periodic_snapshot_task_begin = private(periodic_snapshot_task_begin)

    async def setup(middleware):
        await middleware.call("network.general.register_activity", "vmware", "VMware Snapshots")

    ns.update(VMWareService=VMWareService, VMWareEntry=VMWareEntry, setup=setup,
              VMWarePeriodicSnapshotTaskProceedArgs=VMWarePeriodicSnapshotTaskProceedArgs)
    mod.__dict__.update(ns)
    return mod
