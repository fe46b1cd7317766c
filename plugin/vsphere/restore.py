"""The restore port (``app/restore_ports.RestoreHypervisor``) implemented with pyVmomi.

A restore is a handful of operations on one VM, so this reads properties one object at a
time (no batched collector like the inventory's) and waits for each task through the
engine hypervisor's task watcher. Calls, per the vSphere Web Services API:
``HostDatastoreSystem.CreateNasDatastore`` / ``RemoveDatastore``; for a VMFS copy on a new
LUN ``HostStorageSystem.RescanAllHba`` / ``RescanVmfs`` / ``QueryUnresolvedVmfsVolume``,
``HostDatastoreSystem.ResignatureUnresolvedVmfsVolume_Task``, ``Datastore.Rename_Task``, and
to take it away ``UnmountVmfsVolume`` then ``DetachScsiLun`` (VMware's order before a LUN is
unpresented: no dead paths left on the host); ``Folder.RegisterVM_Task``,
``VirtualMachineSnapshot.RevertToSnapshot_Task(suppressPowerOn=True)``,
``VirtualMachine.ReconfigVM_Task`` (NICs, an existing disk), ``PowerOnVM_Task`` with
``runtime.question`` answered through ``AnswerVM``, ``PowerOffVM_Task``, ``UnregisterVM``.
Every fault leaves as the engine's typed failures.
"""

from __future__ import annotations

import time
from typing import Any

from pyVmomi import vim, vmodl

from ..app.restore_ports import HostInfo, VmLayout
from ..domain.model import PowerState
from ..domain.storage import normalize_naa
from ..engine.ports import NoAnswer, Refused, TaskHandle
from .hypervisor import VsphereHypervisor, translated
from .inventory import snapshot_facts

TASK_TIMEOUT_S = 300.0
# The key ESXi gives "I Copied It" in its msg.uuid.altered question ("2"); matched by label
# too, as hosts localise nothing but the label's wording differs across releases.
_COPIED = ("button.uuid.copyTheVM", "2")


class VsphereRestore:
    """One logged-in endpoint as a restore sees it."""

    def __init__(self, hv: VsphereHypervisor) -> None:
        self._hv = hv
        self.endpoint_id = hv.endpoint_id
        self._stub = hv.session.stub

    # --- reading -------------------------------------------------------------------------

    # Each look-up is one property retrieval over all objects of a kind, not a round trip
    # per object: a restore must not cost a thousand calls in a vCenter of a thousand VMs.

    def _datastores(self) -> dict[str, dict[str, Any]]:
        return self._hv.properties_of(vim.Datastore, ["name", "info"])

    @translated
    def hosts(self) -> list[HostInfo]:
        datastores = self._datastores()
        found = self._hv.properties_of(vim.HostSystem, ["name", "runtime.connectionState",
                                                        "runtime.inMaintenanceMode", "datastore",
                                                        "config.storageDevice.scsiLun"])
        out = []
        for moref, props in found.items():
            servers = set()
            for ds in props.get("datastore") or ():
                nas = getattr(datastores.get(ds._moId, {}).get("info"), "nas", None)
                if nas is not None:
                    servers.add(nas.remoteHost)
                    servers.update(getattr(nas, "remoteHostNames", None) or ())
            out.append(HostInfo(moref=moref, name=props.get("name", moref),
                                connected=props.get("runtime.connectionState") == "connected"
                                and not props.get("runtime.inMaintenanceMode"),
                                nfs_servers=tuple(sorted(s for s in servers if s)),
                                luns=tuple(sorted(_naa_ids(props.get("config.storageDevice.scsiLun"))))))
        return out

    @translated
    def find_vm(self, name: str) -> str | None:
        found = self._hv.properties_of(vim.VirtualMachine, ["name"])
        return next((moref for moref, props in found.items() if props.get("name") == name), None)

    @translated
    def find_datastore(self, name: str) -> str | None:
        return next((m for m, props in self._datastores().items() if props.get("name") == name), None)

    @translated
    def nfs_export(self, datastore_name: str) -> str | None:
        for props in self._datastores().values():
            nas = getattr(props.get("info"), "nas", None) if props.get("name") == datastore_name else None
            if nas is not None:
                return nas.remotePath
        return None

    @translated
    def vmfs_extents(self, datastore_name: str) -> tuple[str, ...] | None:
        for props in self._datastores().values():
            vmfs = getattr(props.get("info"), "vmfs", None) if props.get("name") == datastore_name else None
            if vmfs is not None:
                return tuple(e.diskName for e in vmfs.extent or ())
        return None

    @translated
    def find_datastore_on(self, naa: str) -> str | None:
        for moref, props in self._datastores().items():
            vmfs = getattr(props.get("info"), "vmfs", None)
            if vmfs is not None and naa in {normalize_naa(e.diskName) for e in vmfs.extent or ()}:
                return moref
        return None

    @translated
    def layout(self, vm_moref: str) -> VmLayout | None:
        vm = vim.VirtualMachine(vm_moref, stub=self._stub)
        try:
            config = vm.config
        except vmodl.fault.ManagedObjectNotFound:
            return None
        devices = config.hardware.device if config else ()
        disks = tuple(d.backing.fileName for d in devices
                      if isinstance(d, vim.vm.device.VirtualDisk) and hasattr(d.backing, "fileName"))
        nics = tuple(bool(d.connectable and d.connectable.startConnected) for d in devices
                     if isinstance(d, vim.vm.device.VirtualEthernetCard))
        info = vm.snapshot
        snapshots = snapshot_facts(info)
        current_ref = info.currentSnapshot._moId if info is not None and info.currentSnapshot else None
        current = next((s.name for s in snapshots if s.moref == current_ref), None)
        runtime = vm.runtime
        return VmLayout(moref=vm_moref, name=vm.name, vmx_path=config.files.vmPathName if config else "",
                        disks=disks, host=runtime.host._moId if runtime.host else None,
                        power_state=PowerState(str(runtime.powerState)), snapshots=snapshots,
                        current_snapshot=current, nics_start_connected=nics)

    # --- acting --------------------------------------------------------------------------

    def _wait(self, task: Any, timeout: float = TASK_TIMEOUT_S) -> str | None:
        outcome = self._hv.wait(TaskHandle(task._moId, task), timeout)
        if outcome is None:
            raise NoAnswer(f"VMware did not finish {task._moId} within {timeout:.0f} s")
        if outcome.failure is not None:
            raise outcome.failure
        return outcome.result

    def _host(self, host_moref: str) -> Any:
        return vim.HostSystem(host_moref, stub=self._stub)

    @translated
    def mount_nfs(self, host_moref: str, server: str, export: str, name: str) -> str:
        spec = vim.host.NasVolume.Specification(remoteHost=server, remotePath=export, localPath=name,
                                                accessMode="readWrite", type="NFS")
        return self._host(host_moref).configManager.datastoreSystem.CreateNasDatastore(spec)._moId

    @translated
    def mount_vmfs_copy(self, host_moref: str, naa: str, name: str) -> str:
        host = self._host(host_moref)
        storage = host.configManager.storageSystem
        storage.RescanAllHba()
        storage.RescanVmfs()
        copies = [v for v in storage.QueryUnresolvedVmfsVolume() or ()
                  if any(normalize_naa(e.device.diskName) == naa for e in v.extent or ())]
        if not copies:
            raise Refused(f"after a rescan, {host.name} sees no unresolved VMFS copy on LUN naa.{naa}")
        volume = copies[0]
        status = volume.resolveStatus
        if status is not None and (not status.resolvable or status.incompleteExtents):
            raise Refused(f"the VMFS copy {volume.vmfsLabel} on LUN naa.{naa} cannot be resignatured: "
                          "not every extent of it is there")
        spec = vim.host.UnresolvedVmfsResignatureSpec(extentDevicePath=[e.devicePath for e in volume.extent])
        self._wait(host.configManager.datastoreSystem.ResignatureUnresolvedVmfsVolume_Task(spec))
        # The task's result is the new datastore, named "snap-<hex>-<label>" by ESXi: found by
        # its LUN (as an undo finds it), then given the restore's own name.
        moref = self.find_datastore_on(naa)
        if moref is None:
            raise Refused(f"{host.name} resignatured the VMFS copy on LUN naa.{naa}, but mounts no "
                          "datastore on it")
        self._wait(vim.Datastore(moref, stub=self._stub).Rename_Task(name))
        return moref

    @translated
    def unmount(self, host_moref: str, datastore_moref: str) -> None:
        host = self._host(host_moref)
        datastore = vim.Datastore(datastore_moref, stub=self._stub)
        vmfs = getattr(datastore.info, "vmfs", None)
        if vmfs is None:
            host.configManager.datastoreSystem.RemoveDatastore(datastore)
            return
        storage = host.configManager.storageSystem
        storage.UnmountVmfsVolume(vmfs.uuid)
        disks = {e.diskName for e in vmfs.extent or ()}
        # The storage system's device list, not host.config: that reads the host's whole config.
        for lun in storage.storageDeviceInfo.scsiLun or ():
            if lun.canonicalName in disks:
                storage.DetachScsiLun(lun.uuid)

    @translated
    def rescan(self, host_moref: str) -> None:
        self._host(host_moref).configManager.storageSystem.RescanAllHba()

    @translated
    def register(self, vmx_path: str, name: str, host_moref: str) -> str:
        host = self._host(host_moref)
        datacenter = host.parent
        while not isinstance(datacenter, vim.Datacenter):
            datacenter = datacenter.parent
        task = datacenter.vmFolder.RegisterVM_Task(path=vmx_path, name=name, asTemplate=False,
                                                   pool=host.parent.resourcePool, host=host)
        result = self._wait(task)
        if not result:
            raise Refused(f"RegisterVM_Task of {vmx_path} returned no VM")
        return result

    @translated
    def revert(self, snapshot_moref: str) -> None:
        snapshot = vim.vm.Snapshot(snapshot_moref, stub=self._stub)
        self._wait(snapshot.RevertToSnapshot_Task(suppressPowerOn=True))

    @translated
    def disconnect_network(self, vm_moref: str) -> int:
        vm = vim.VirtualMachine(vm_moref, stub=self._stub)
        changes = []
        for device in vm.config.hardware.device:
            if isinstance(device, vim.vm.device.VirtualEthernetCard):
                device.connectable = device.connectable or vim.vm.device.VirtualDevice.ConnectInfo()
                device.connectable.startConnected = False
                device.connectable.connected = False
                changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
        if changes:
            self._wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes)))
        return len(changes)

    @translated
    def power_on(self, vm_moref: str, timeout_s: float) -> str | None:
        vm = vim.VirtualMachine(vm_moref, stub=self._stub)
        task = vm.PowerOnVM_Task()
        answered = None
        deadline = time.monotonic() + timeout_s
        # The task stays running while the VM waits for its question to be answered.
        while task.info.state in ("queued", "running"):
            question = vm.runtime.question
            if question is not None and answered is None:
                choice = _copied_choice(question)
                vm.AnswerVM(question.id, choice)
                answered = question.text.split(":", 1)[0] or question.id
            if time.monotonic() > deadline:
                raise NoAnswer(f"{vm_moref} did not power on within {timeout_s:.0f} s")
            time.sleep(0.2)
        self._wait(task, max(1.0, deadline - time.monotonic()))
        return answered

    @translated
    def power_off(self, vm_moref: str) -> None:
        self._wait(vim.VirtualMachine(vm_moref, stub=self._stub).PowerOffVM_Task())

    @translated
    def unregister(self, vm_moref: str) -> None:
        vim.VirtualMachine(vm_moref, stub=self._stub).UnregisterVM()

    @translated
    def attach_disk(self, disk_path: str, to_vm_moref: str, writable: bool) -> None:
        vm = vim.VirtualMachine(to_vm_moref, stub=self._stub)
        devices = vm.config.hardware.device
        controller = next((d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)), None)
        if controller is None:
            raise Refused(f"{vm.name} has no SCSI controller to attach a disk to")
        used = {d.unitNumber for d in devices if d.controllerKey == controller.key}
        unit = next(u for u in range(16) if u != 7 and u not in used)   # 7: the controller's own
        disk = vim.vm.device.VirtualDisk(
            key=-1, controllerKey=controller.key, unitNumber=unit,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=disk_path, diskMode="independent_persistent" if writable
                else "independent_nonpersistent"))
        self._wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
            vim.vm.device.VirtualDeviceSpec(operation="add", device=disk)])))

    @translated
    def detach_disk(self, disk_path: str, from_vm_moref: str) -> bool:
        vm = vim.VirtualMachine(from_vm_moref, stub=self._stub)
        try:
            devices = vm.config.hardware.device
        except vmodl.fault.ManagedObjectNotFound:
            return False
        disk = next((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)
                     and getattr(d.backing, "fileName", None) == disk_path), None)
        if disk is None:
            return False
        # No fileOperation: the disk file stays (it is the restored copy's).
        self._wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
            vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk)])))
        return True

    def close(self) -> None:
        self._hv.close()


def _naa_ids(luns: Any) -> set[str]:
    """The NAA ids of a host's SCSI disks (``naa.…`` canonical names only: ``t10.``, ``mpx.``
    are local or not identified by NAA)."""
    return {normalize_naa(lun.canonicalName) for lun in luns or ()
            if (lun.canonicalName or "").lower().startswith("naa.")}


def _copied_choice(question: Any) -> str:
    for info in question.choice.choiceInfo:
        if info.key in _COPIED or "copied" in (info.label or "").lower():
            return info.key
    raise Refused(f"VMware asks a question this restore does not know how to answer: {question.text}")
