"""Shape a simulator's inventory through the real vSphere API (test rig only).

Tests, the demo and the benchmark build their scenarios with these: VMs whose .vmx is on
one datastore and a disk on another, PCI passthrough devices, independent disks, Tools
running or not, injected faults. Everything goes through pyVmomi calls a real vCenter
would accept, so the product reads the result the way it reads a real inventory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from pyVim import connect
from pyVmomi import vim

from .vcsim import Simulator


def connect_to(sim: Simulator) -> vim.ServiceInstance:
    si = connect.Connect(host=sim.host, port=sim.port, user=sim.username, pwd=sim.password,
                         sslContext=sim.ssl_context(), version="vim.version.version11")
    si._stub.schemeArgs["timeout"] = 30   # later connections (pyvmomi 6.7.1 has no httpConnectionTimeout)
    return si


def wait(task: vim.Task, timeout: float = 60) -> object:
    """Wait for a task (rig use only; the product waits through WaitForUpdatesEx)."""
    deadline = time.monotonic() + timeout
    while task.info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task} still running")
        time.sleep(0.05)
    if task.info.state == vim.TaskInfo.State.error:
        raise task.info.error
    return task.info.result


def _objects(si: vim.ServiceInstance, kind: type) -> list:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.DestroyView()


def vms(si: vim.ServiceInstance) -> list[vim.VirtualMachine]:
    return _objects(si, vim.VirtualMachine)


def datastores(si: vim.ServiceInstance) -> list[vim.Datastore]:
    return _objects(si, vim.Datastore)


def vm_named(si: vim.ServiceInstance, name: str) -> vim.VirtualMachine:
    for vm in vms(si):
        if vm.name == name:
            return vm
    raise KeyError(f"no VM named {name!r}")


def datastore_named(si: vim.ServiceInstance, name: str) -> vim.Datastore:
    for ds in _objects(si, vim.Datastore):
        if ds.name == name:
            return ds
    raise KeyError(f"no datastore named {name!r}")


def reconfigure(vm: vim.VirtualMachine, **spec_fields: object) -> None:
    wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(**spec_fields)))


def set_extra_config(vm: vim.VirtualMachine, values: dict[str, str]) -> None:
    reconfigure(vm, extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in values.items()])


def inject_fault(vm: vim.VirtualMachine, method: str, fault: str) -> None:
    """Make every ``method`` task of this VM fail with ``fault`` (e.g. "InvalidState")."""
    set_extra_config(vm, {f"vcsim.fault.{method}": fault})


def clear_fault(vm: vim.VirtualMachine, method: str) -> None:
    set_extra_config(vm, {f"vcsim.fault.{method}": ""})


def set_tools_running(vm: vim.VirtualMachine, running: bool = True) -> None:
    # 0.24.2 sets arbitrary properties through "SET.<path>" extraConfig keys.
    status = "guestToolsRunning" if running else "guestToolsNotRunning"
    set_extra_config(vm, {"SET.guest.toolsRunningStatus": status})


def add_passthrough(vm: vim.VirtualMachine, label: str = "GPU 0") -> None:
    device = vim.vm.device.VirtualPCIPassthrough(
        key=-100,
        deviceInfo=vim.Description(label=label, summary="PCI passthrough"),
        backing=vim.vm.device.VirtualPCIPassthrough.DeviceBackingInfo(
            id="0000:3b:00.0", deviceId="1eb8", systemId="sim", vendorId=0x10DE,
            deviceName=label))
    change = vim.vm.device.VirtualDeviceSpec(operation="add", device=device)
    reconfigure(vm, deviceChange=[change])


def _controller_key(vm: vim.VirtualMachine) -> int:
    for dev in vm.config.hardware.device:
        if isinstance(dev, vim.vm.device.VirtualSCSIController):
            return dev.key
    raise LookupError(f"{vm.name} has no SCSI controller")


def add_disk(vm: vim.VirtualMachine, datastore_name: str, size_kb: int = 1024,
             disk_mode: str = "persistent", unit: int = 1, directory: str | None = None) -> None:
    """Add a new disk whose file lives on ``datastore_name``."""
    directory = directory or vm.name
    si = vim.ServiceInstance("ServiceInstance", stub=vm._stub)
    content = si.RetrieveContent()
    dc = content.rootFolder.childEntity[0]
    with contextlib.suppress(vim.fault.FileAlreadyExists):
        content.fileManager.MakeDirectory(f"[{datastore_name}] {directory}", dc, True)
    disk = vim.vm.device.VirtualDisk(
        key=-200 - unit, controllerKey=_controller_key(vm), unitNumber=unit, capacityInKB=size_kb,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName=f"[{datastore_name}] {directory}/{vm.name}_{unit}.vmdk",
            diskMode=disk_mode, thinProvisioned=True))
    change = vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
    reconfigure(vm, deviceChange=[change])


def create_vm(si: vim.ServiceInstance, name: str, datastore_name: str,
              power_on: bool = True, tools_running: bool = True,
              guest_id: str = "otherGuest64") -> vim.VirtualMachine:
    """A new VM whose .vmx and first disk are on ``datastore_name``."""
    content = si.RetrieveContent()
    dc = content.rootFolder.childEntity[0]
    pool = next(h for h in dc.hostFolder.childEntity).resourcePool
    scsi = vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0,
                                                                       sharedBus="noSharing"))
    spec = vim.vm.ConfigSpec(name=name, guestId=guest_id, numCPUs=1, memoryMB=256,
                             files=vim.vm.FileInfo(vmPathName=f"[{datastore_name}]"),
                             deviceChange=[scsi])
    vm = wait(dc.vmFolder.CreateVM_Task(spec, pool))
    add_disk(vm, datastore_name, unit=0)
    if tools_running:
        set_tools_running(vm)
    if power_on:
        wait(vm.PowerOnVM_Task())
    return vm


def power_off(vm: vim.VirtualMachine) -> None:
    wait(vm.PowerOffVM_Task())


def snapshot_names(vm: vim.VirtualMachine) -> list[str]:
    def walk(trees: Iterable) -> Iterable[str]:
        for tree in trees or ():
            yield tree.name
            yield from walk(tree.childSnapshotList)
    return list(walk(vm.snapshot.rootSnapshotList if vm.snapshot else ()))


def add_nfs_datastore(si: vim.ServiceInstance, local_path: str, remote_host: str,
                      remote_path: str | None = None) -> str:
    """Mount an NFS datastore backed by ``local_path`` on every host; returns its name.

    0.24.2 names a NAS datastore after the last component of its local path.
    """
    spec = vim.host.NasVolume.Specification(
        remoteHost=remote_host, remotePath=remote_path or local_path, localPath=local_path,
        accessMode="readWrite", type="NFS")
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    try:
        for host in view.view:
            host.configManager.datastoreSystem.CreateNasDatastore(spec)
    finally:
        view.DestroyView()
    return local_path.rstrip("/").rsplit("/", 1)[-1]
