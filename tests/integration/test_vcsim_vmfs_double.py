"""The simulator's iSCSI / VMFS double (tools/vcsim/coord_vmfs.go), through pyVmomi: LUNs
of the rig's iSCSI target appear on a rescan, a LUN formatted as VMFS is a datastore, a
copy of its device (a zvol clone) is an unresolved VMFS volume that resignatures into a
datastore of its own, a VM registers from it with its snapshot tree, and cleanup
unmounts, detaches and drops the LUN."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from tools.rig import inventory, iscsi


def _host(si: vim.ServiceInstance, name: str) -> vim.HostSystem:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    try:
        return next(h for h in view.view if h.name == name)
    finally:
        view.DestroyView()


def _device(tmp_path: Path, name: str) -> Path:
    device = tmp_path / name
    device.mkdir()
    return device


def _lun_names(storage: vim.host.StorageSystem) -> list[str]:
    return [lun.canonicalName for lun in storage.storageDeviceInfo.scsiLun]


def _resignature(dss: vim.host.DatastoreSystem, path: str) -> vim.host.ResignatureRescanResult:
    spec = vim.host.UnresolvedVmfsResignatureSpec(extentDevicePath=[path])
    return inventory.wait(dss.ResignatureUnresolvedVmfsVolume_Task(spec))


def test_a_vm_comes_back_from_a_resignatured_copy_of_its_lun(vmfs_si, target, tmp_path):
    si = vmfs_si
    host, other = _host(si, "DC0_H0"), _host(si, "DC0_C0_H0")
    storage, dss = host.configManager.storageSystem, host.configManager.datastoreSystem

    device_a = _device(tmp_path, "zvol-a")
    naa_a = target.add_lun(device_a)
    assert re.fullmatch(r"6589cfc000000[0-9a-f]{19}", naa_a)
    assert iscsi.scsi_disk(host, naa_a) is None            # seen only after a rescan
    storage.RescanAllHba()
    disk_a = iscsi.scsi_disk(host, naa_a)
    assert isinstance(disk_a, vim.host.ScsiDisk)
    assert disk_a.devicePath == iscsi.device_path(naa_a) and disk_a.lunType == "disk"
    assert disk_a.operationalState == ["ok"] and disk_a.uuid and disk_a.key
    assert f"naa.{naa_a}" in _lun_names(storage)           # the storage system's own copy
    assert iscsi.scsi_disk(other, naa_a) is None           # that host has not rescanned yet
    other.configManager.storageSystem.RescanVmfs()
    assert iscsi.scsi_disk(other, naa_a).uuid == disk_a.uuid   # stable per naa

    original = iscsi.create_vmfs_datastore(host, naa_a, "vmfs-a")
    header = iscsi.read_header(device_a)
    assert header == {"uuid": original.info.vmfs.uuid, "label": "vmfs-a", "naa": naa_a}
    assert original.name == "vmfs-a" and original.summary.type == "VMFS"
    assert original.summary.url == f"ds:///vmfs/volumes/{header['uuid']}/"
    assert isinstance(original.info, vim.host.VmfsDatastoreInfo) and original.info.url == str(device_a)
    assert [(e.diskName, e.partition) for e in original.info.vmfs.extent] == [(f"naa.{naa_a}", 1)]
    assert {m.key for m in original.host} == {host, other}  # every host that sees the LUN
    assert storage.QueryUnresolvedVmfsVolume() == []        # the original is no copy

    vm = inventory.create_vm(si, "orig", "vmfs-a")
    inventory.wait(vm.CreateSnapshot_Task("before-restore", "", False, False))
    assert (device_a / "orig" / "orig.vcsim-vmsd.xml").exists()   # the sidecar is on the LUN

    device_b = tmp_path / "zvol-a-clone"
    shutil.copytree(device_a, device_b)                     # a clone of the zvol's snapshot
    naa_b = target.add_lun(device_b)
    assert storage.QueryUnresolvedVmfsVolume() == []
    storage.RescanAllHba()
    [unresolved] = storage.QueryUnresolvedVmfsVolume()
    assert (unresolved.vmfsLabel, unresolved.vmfsUuid) == ("vmfs-a", header["uuid"])
    assert unresolved.resolveStatus.resolvable and not unresolved.resolveStatus.multipleCopies
    assert unresolved.resolveStatus.incompleteExtents is False and unresolved.totalBlocks > 0
    [extent] = unresolved.extent
    assert extent.device.diskName == f"naa.{naa_b}" and extent.device.partition == 1
    assert extent.devicePath == iscsi.device_path(naa_b) + ":1" and extent.vmfsUuid == header["uuid"]
    assert extent.isHeadExtent and extent.ordinal == 0 and extent.startBlock == 0 and extent.endBlock > 0
    assert extent.reason == "diskIdMismatch"
    assert [u.vmfsUuid for u in dss.QueryUnresolvedVmfsVolumes()] == [header["uuid"]]

    result = _resignature(dss, extent.devicePath)
    assert isinstance(result, vim.host.ResignatureRescanResult) and list(result.rescan) == []
    snap = result.result
    assert re.fullmatch(r"snap-[0-9a-f]{8}-vmfs-a", snap.name) and snap.summary.type == "VMFS"
    new_uuid = snap.info.vmfs.uuid
    assert new_uuid != header["uuid"]
    assert iscsi.read_header(device_b) == {"uuid": new_uuid, "label": snap.name, "naa": naa_b}
    assert [e.diskName for e in snap.info.vmfs.extent] == [f"naa.{naa_b}"]
    assert [m.key for m in snap.host] == [host] and snap in host.datastore
    assert storage.QueryUnresolvedVmfsVolume() == []        # resolved: no copy any more
    assert iscsi.read_header(device_a) == header             # the original is untouched

    inventory.wait(snap.Rename_Task("restored-a"))
    assert snap.name == "restored-a" and snap.summary.name == "restored-a"
    assert snap.info.vmfs.name == "restored-a" and iscsi.read_header(device_b)["label"] == "restored-a"

    dc = si.RetrieveContent().rootFolder.childEntity[0]
    copy = inventory.wait(dc.vmFolder.RegisterVM_Task(
        path="[restored-a] orig/orig.vmx", name="orig-restored", asTemplate=False,
        pool=host.parent.resourcePool, host=host))
    assert inventory.snapshot_names(copy) == ["before-restore"]   # the tree, through the sidecar
    assert copy.snapshot.rootSnapshotList[0].snapshot != vm.snapshot.rootSnapshotList[0].snapshot
    disks = [d.backing.fileName for d in copy.config.hardware.device
             if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disks == ["[restored-a] orig/orig_0.vmdk"]

    with pytest.raises(vim.fault.ResourceInUse):
        storage.UnmountVmfsVolume(new_uuid)                 # a registered VM has files there
    disk_b = iscsi.scsi_disk(host, naa_b)
    with pytest.raises(vim.fault.ResourceInUse):
        storage.DetachScsiLun(disk_b.uuid)                  # a volume on it is mounted
    copy.UnregisterVM()
    storage.UnmountVmfsVolume(new_uuid)
    assert "restored-a" not in [ds.name for ds in inventory.datastores(si)]
    assert "restored-a" not in [ds.name for ds in host.datastore]
    assert storage.QueryUnresolvedVmfsVolume() == []        # its header is its own now

    storage.DetachScsiLun(disk_b.uuid)
    assert iscsi.scsi_disk(host, naa_b).operationalState == ["off"]
    storage.RescanAllHba()
    assert iscsi.scsi_disk(host, naa_b).operationalState == ["off"]   # detached stays detached
    target.remove_lun(naa_b)
    assert iscsi.scsi_disk(host, naa_b) is not None         # until the next rescan
    storage.RescanAllHba()
    assert iscsi.scsi_disk(host, naa_b) is None and f"naa.{naa_b}" not in _lun_names(storage)
    assert iscsi.scsi_disk(host, naa_a).operationalState == ["ok"]
    assert original.name == "vmfs-a" and inventory.snapshot_names(vm) == ["before-restore"]


def test_vmfs_double_refuses_what_esxi_refuses(vmfs_si, target, tmp_path):
    si = vmfs_si
    host = _host(si, "DC0_H0")
    storage, dss = host.configManager.storageSystem, host.configManager.datastoreSystem
    device_1, device_2 = _device(tmp_path, "zvol-f1"), _device(tmp_path, "zvol-f2")
    naa_1, naa_2 = target.add_lun(device_1), target.add_lun(device_2)
    storage.RescanAllHba()
    first = iscsi.create_vmfs_datastore(host, naa_1, "vmfs-f1")
    second = iscsi.create_vmfs_datastore(host, naa_2, "vmfs-f2")

    with pytest.raises(vim.fault.HostConfigFault, match="mounted VMFS volume"):
        iscsi.create_vmfs_datastore(host, naa_1, "vmfs-f1-again")
    assert iscsi.read_header(device_1)["label"] == "vmfs-f1"          # not reformatted
    with pytest.raises(vim.fault.NotFound):
        dss.QueryVmfsDatastoreCreateOptions(devicePath=iscsi.device_path(iscsi.new_naa()))
    spec = dss.QueryVmfsDatastoreCreateOptions(devicePath=iscsi.device_path(naa_1))[0].spec
    spec.vmfs.volumeName, spec.vmfs.extent.diskName = "vmfs-nowhere", f"naa.{iscsi.new_naa()}"
    with pytest.raises(vim.fault.NotFound):
        dss.CreateVmfsDatastore(spec)

    with pytest.raises(vmodl.fault.InvalidArgument, match="holds no unresolved VMFS volume"):
        _resignature(dss, iscsi.device_path(naa_1) + ":1")              # the original itself
    with pytest.raises(vmodl.fault.InvalidArgument, match="no partition of an attached disk"):
        _resignature(dss, iscsi.device_path(iscsi.new_naa()) + ":1")    # no such LUN
    with pytest.raises(vim.fault.NotFound):
        storage.UnmountVmfsVolume("5f000000-00000000-0000-000000000000")
    with pytest.raises(vim.fault.NotFound):
        storage.DetachScsiLun("0200000000" + "0" * 32)

    with pytest.raises(vim.fault.DuplicateName):
        inventory.wait(second.Rename_Task("vmfs-f1"))
    with pytest.raises(vim.fault.DuplicateName):
        second.RenameDatastore("vmfs-f1")
    assert second.name == "vmfs-f2" and first.name == "vmfs-f1"

    # Two clones of one volume: both listed, each marked as one of several copies.
    clones = []
    for name in ("zvol-f1-clone-1", "zvol-f1-clone-2"):
        shutil.copytree(device_1, tmp_path / name)
        clones.append(target.add_lun(tmp_path / name))
    storage.RescanAllHba()
    found = storage.QueryUnresolvedVmfsVolume()
    assert sorted(u.extent[0].device.diskName for u in found) == sorted(f"naa.{n}" for n in clones)
    assert {u.vmfsUuid for u in found} == {first.info.vmfs.uuid}
    assert all(u.resolveStatus.multipleCopies for u in found)
    clone_uuid = iscsi.scsi_disk(host, clones[0]).uuid
    storage.DetachScsiLun(clone_uuid)                       # a detached LUN yields no volume
    [left] = storage.QueryUnresolvedVmfsVolume()
    assert left.extent[0].device.diskName == f"naa.{clones[1]}" and not left.resolveStatus.multipleCopies
    with pytest.raises(vmodl.fault.InvalidArgument):
        _resignature(dss, iscsi.device_path(clones[0]) + ":1")
    storage.AttachScsiLun(clone_uuid)
    assert len(storage.QueryUnresolvedVmfsVolume()) == 2

