"""BASELINE, not product code: the stock TrueNAS 25.10 VMware snapshot algorithm.

Written from a reading of truenas/middleware TS-25.10.6
``src/middlewared/middlewared/plugins/vmware.py`` (``snapshot_proceed``,
``snapshot_end``, ``connect``, ``find_vms_by_uuid``, ``delete_snapshot``,
``_doesVMDependOnDataStore``, ``_canSnapshotVM``, ``_findVMSnapshotByName``), to measure
this project against what TrueNAS does today. It keeps every vCenter round trip of the
original, in the same order:

- one ``SmartConnect`` (certificate checks off) and ``RetrieveContent`` per mapping row;
- a ContainerView of every VM, walked with pyVmomi attribute access (each access is one
  ``Fetch``): ``summary.runtime.powerState``; ``datastore`` and each datastore's ``info``
  (name *prefix* match), else each device backing's datastore ``info`` (exact match);
  ``config.hardware.device`` again for passthrough; ``snapshot`` for a same-named one;
- a serial ``CreateSnapshot_Task(memory=False, quiesce=True)`` + ``pyVim.task.WaitForTask``
  per VM, then ``config.uuid`` for the context;
- ``end``: login again, ``FindAllByUuid(uuid, vmSearch=True)`` per BIOS UUID, ``name``
  (twice, for the failure/skip lists), ``snapshot`` to find it by name, a serial
  ``RemoveSnapshot_Task(removeChildren=True)`` + ``WaitForTask``; ``Disconnect``.

What is left out does not talk to vCenter: alerts, the datastore state column, the
deferred-delete table and the middleware calls. Two deviations, both forced by the rig:
the simulator listens on a random port (stock has no port field, so always 443), and the
timestamps below are added to measure each VM snapshot's lifetime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from datetime import datetime
from typing import Any

from pyVim import connect
from pyVim import task as vim_task
from pyVmomi import vim
from truenas_vmware_coord.vsphere.tls import VerifyMode, context_for

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StockRow:
    """A ``storage_vmwareplugin`` row (decrypted), plus what the rig needs: the port, and
    the certificate to pin."""

    hostname: str
    username: str
    password: str
    datastore: str
    filesystem: str
    port: int = 443
    sha256: str | None = None


@dataclasses.dataclass
class Timings:
    """Bench instrumentation: when each VM's snapshot was created and removed (monotonic)."""

    created: dict[str, float] = dataclasses.field(default_factory=dict)
    removed: dict[str, float] = dataclasses.field(default_factory=dict)

    def lifetimes(self) -> list[float]:
        return [self.removed[k] - t for k, t in self.created.items() if k in self.removed]


class StockVmware:
    """The stock ``snapshot_proceed`` / ``snapshot_end`` pair, without the middleware."""

    def __init__(self) -> None:
        self.timings = Timings()

    def connect(self, row: StockRow) -> Any:
        # Stock turns certificate checking off; the baseline pins the simulator's certificate
        # instead. That costs a handshake check, not a SOAP call, so the algorithm measured is
        # the same, and no code here talks TLS unverified.
        mode = VerifyMode.PINNED if row.sha256 else VerifyMode.SYSTEM
        ssl_context = context_for(row.hostname, row.hostname, row.port, mode, row.sha256, timeout=30)
        return connect.SmartConnect(host=row.hostname, port=row.port, user=row.username,
                                    pwd=row.password, sslContext=ssl_context)

    def snapshot_proceed(self, dataset: str, rows: list[StockRow]) -> dict[str, Any] | None:
        vmsnapname = str(uuid.uuid4())
        description = f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} TrueNAS Created Snapshot"
        vmsnapobjs = []
        for row in rows:
            snapvms: list[str] = []
            snapvmfails: list[list[str]] = []
            snapvmskips: list[list[str]] = []
            try:
                si = self.connect(row)
                content = si.RetrieveContent()
            except Exception:  # noqa: BLE001 - stock logs, alerts and goes on
                log.warning("VMware login to %s failed", row.hostname, exc_info=True)
                continue
            # Stock never destroys this view.
            vm_view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            for vm in vm_view.view:
                if vm.summary.runtime.powerState != "poweredOn":
                    continue
                if self._depends_on_datastore(vm, row.datastore):
                    try:
                        if self._can_snapshot(vm):
                            if not self._find_snapshot_by_name(vm, vmsnapname):
                                vim_task.WaitForTask(vm.CreateSnapshot_Task(
                                    name=vmsnapname, description=description,
                                    memory=False, quiesce=True))
                                self.timings.created[vm._moId] = time.monotonic()
                        else:
                            snapvmskips.append([vm.config.uuid, vm.name])
                    except Exception:  # noqa: BLE001 - stock alerts and records the failure
                        log.warning("Snapshot of VM %s failed", vm.name, exc_info=True)
                        snapvmfails.append([vm.config.uuid, vm.name])
                    snapvms.append(vm.config.uuid)
            connect.Disconnect(si)
            vmsnapobjs.append({"vmsnapobj": row, "snapvms": snapvms, "snapvmfails": snapvmfails,
                               "snapvmskips": snapvmskips})
        if not vmsnapobjs:
            return None
        return {"vmsnapname": vmsnapname, "vmsnapobjs": vmsnapobjs,
                "vmsynced": all(len(o["snapvms"]) > 0 and len(o["snapvmfails"]) == 0
                                for o in vmsnapobjs)}

    def snapshot_end(self, context: dict[str, Any]) -> None:
        vmsnapname = context["vmsnapname"]
        for elem in context["vmsnapobjs"]:
            row: StockRow = elem["vmsnapobj"]
            try:
                si = self.connect(row)
            except Exception:  # noqa: BLE001 - stock defers the deletes to a retry table
                log.warning("VMware login failed to %s", row.hostname)
                continue
            for vm_uuid in elem["snapvms"]:
                for vm in si.content.searchIndex.FindAllByUuid(None, vm_uuid, True):
                    if ([vm_uuid, vm.name] not in elem["snapvmfails"]
                            and [vm_uuid, vm.name] not in elem["snapvmskips"]):
                        try:
                            self._delete_snapshot(vm, vmsnapname)
                        except Exception:  # noqa: BLE001 - stock alerts and defers
                            log.debug("removing %s on %s failed", vmsnapname, vm.name, exc_info=True)
            connect.Disconnect(si)

    def _delete_snapshot(self, vm: Any, vmsnapname: str) -> None:
        snap = self._find_snapshot_by_name(vm, vmsnapname)
        if snap:
            vim_task.WaitForTask(snap.RemoveSnapshot_Task(True))
            self.timings.removed[vm._moId] = time.monotonic()

    def _depends_on_datastore(self, vm: Any, datastore: str) -> bool:
        try:
            for ds in vm.datastore:
                if ds.info.name.startswith(datastore):
                    return True
            for device in vm.config.hardware.device:
                if device.backing is None:
                    continue
                if hasattr(device.backing, "fileName"):
                    if device.backing.datastore is None:
                        continue
                    if device.backing.datastore.info.name == datastore:
                        return True
        except Exception:  # noqa: BLE001 - stock swallows and logs at debug
            log.debug("depends-on-datastore check failed", exc_info=True)
        return False

    def _can_snapshot(self, vm: Any) -> bool:
        with contextlib.suppress(Exception):
            for device in vm.config.hardware.device:
                if isinstance(device, vim.VirtualPCIPassthrough):
                    return False
        return True

    def _find_snapshot_by_name(self, vm: Any, name: str) -> Any:
        try:
            if vm.snapshot is None:
                return None
            for tree in vm.snapshot.rootSnapshotList:
                found = self._find_in_tree(tree, name)
                if found:
                    return found
        except Exception:  # noqa: BLE001 - stock swallows and logs at debug
            log.debug("find snapshot failed", exc_info=True)
        return None

    def _find_in_tree(self, tree: Any, name: str) -> Any:
        if tree.name == name:
            return tree.snapshot
        for child in tree.childSnapshotList:
            if child.name == name:
                return child.snapshot
            if hasattr(child, "childSnapshotList"):
                found = self._find_in_tree(child, name)
                if found:
                    return found
        return None
