"""The test rig itself: the simulator launcher and zfs-fuse do what later tests rely on."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from pyVmomi import vim, vmodl

from tools.rig import inventory, vcsim
from tools.rig.zfs import stop_by_pid


def _retrieve_vm_names(si) -> list[str]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
            obj=view, skip=True,
            selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                name="v", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(
            type=vim.VirtualMachine, pathSet=["name"])])
    result = content.propertyCollector.RetrievePropertiesEx([spec],
                                                            vmodl.query.PropertyCollector.RetrieveOptions())
    view.DestroyView()
    return [o.propSet[0].val for o in result.objects]


def test_thousand_vms_listed_in_one_retrieve(start_vcsim):
    sim = start_vcsim("-vm", "500")
    si = inventory.connect_to(sim)
    si.RetrieveContent()
    sim.stats(reset=True)
    names = _retrieve_vm_names(si)
    calls = sim.stats()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert calls.get("RetrievePropertiesEx") == 1
    assert "Fetch" not in calls


def test_snapshot_created_and_removed_with_readable_task_info(si):
    vm = inventory.vms(si)[0]
    task = vm.CreateSnapshot_Task(name="rig-create", description="rig", memory=False,
                                  quiesce=False)
    snapshot = inventory.wait(task)
    assert task.info.entity == vm
    assert inventory.snapshot_names(vm) == ["rig-create"]
    remove = snapshot.RemoveSnapshot_Task(removeChildren=False)
    inventory.wait(remove)
    # Bug 1 of 0.24.2: the remove task's entity was the snapshot; now it is the VM.
    assert remove.info.entity == vm
    # Bug 2 of 0.24.2: fetching the unset vm.snapshot dropped the connection.
    assert vm.snapshot is None


def test_injected_fault_fails_only_that_vm(si):
    victim, bystander = inventory.vms(si)[:2]
    inventory.inject_fault(victim, "CreateSnapshot_Task", "InvalidState")
    try:
        bad = victim.CreateSnapshot_Task(name="f", memory=False, quiesce=False)
        good = bystander.CreateSnapshot_Task(name="f", memory=False, quiesce=False)
        with pytest.raises(vim.fault.InvalidState):
            inventory.wait(bad)
        snap = inventory.wait(good)
        inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))
    finally:
        inventory.clear_fault(victim, "CreateSnapshot_Task")
    assert victim.snapshot is None and bystander.snapshot is None


def test_injected_remove_fault(si):
    vm = inventory.vms(si)[0]
    snap = inventory.wait(vm.CreateSnapshot_Task(name="r", memory=False, quiesce=False))
    inventory.inject_fault(vm, "RemoveSnapshot_Task", "FileFault")
    with pytest.raises(vim.fault.FileFault):
        inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))
    inventory.clear_fault(vm, "RemoveSnapshot_Task")
    inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))
    assert vm.snapshot is None


def test_strict_mode_refuses_passthrough_only_while_powered_on(si):
    vm = inventory.create_vm(si, "rig-gpu", "LocalDS_0")
    inventory.add_passthrough(vm)
    with pytest.raises(vim.fault.SnapshotIncompatibleDeviceInVm):
        inventory.wait(vm.CreateSnapshot_Task(name="p", memory=False, quiesce=False))
    inventory.power_off(vm)
    snap = inventory.wait(vm.CreateSnapshot_Task(name="p", memory=False, quiesce=False))
    inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))


def test_quiesce_is_ignored_without_tools(si):
    with_tools = inventory.create_vm(si, "rig-tools", "LocalDS_0", tools_running=True)
    without = inventory.create_vm(si, "rig-notools", "LocalDS_0", tools_running=False)
    for vm, expected in ((with_tools, True), (without, False)):
        snap = inventory.wait(vm.CreateSnapshot_Task(name="q", memory=False, quiesce=True))
        assert vm.snapshot.rootSnapshotList[0].quiesced is expected
        inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))


def test_create_snapshot_ex_and_async_cancel(si):
    vm = inventory.create_vm(si, "rig-async", "LocalDS_0")
    snap = inventory.wait(vm.CreateSnapshotEx_Task(
        name="ex", memory=False, quiesceSpec=vim.vm.GuestQuiesceSpec(timeout=5)))
    assert vm.snapshot.rootSnapshotList[0].quiesced is True
    inventory.wait(snap.RemoveSnapshot_Task(removeChildren=False))

    inventory.set_extra_config(vm, {"vcsim.async.CreateSnapshot_Task": "1500"})
    task = vm.CreateSnapshot_Task(name="slow", memory=False, quiesce=False)
    assert task.info.state == vim.TaskInfo.State.running and task.info.cancelable
    task.CancelTask()
    assert task.info.state == vim.TaskInfo.State.error
    assert isinstance(task.info.error, vmodl.fault.RequestCanceled)


def test_second_disk_on_another_datastore(si):
    vm = inventory.create_vm(si, "rig-span", "LocalDS_0")
    inventory.add_disk(vm, "LocalDS_1", unit=2)
    names = sorted(ds.name for ds in vm.datastore)
    assert names == ["LocalDS_0", "LocalDS_1"]
    files = [dev.backing.fileName for dev in vm.config.hardware.device
             if isinstance(dev, vim.vm.device.VirtualDisk)]
    assert any(f.startswith("[LocalDS_1] ") for f in files)


def test_nfs_datastore_on_zfs_holds_vm_files_in_snapshots(start_vcsim, zfs_pool):
    dataset = zfs_pool.create_dataset("rig/nfs")
    mountpoint = zfs_pool.dataset_mountpoint(dataset)
    sim = start_vcsim("-vm", "1", f"-nfs=nfs-rig={mountpoint},host=nas.local,path={mountpoint}")
    si = inventory.connect_to(sim)
    ds = inventory.datastore_named(si, "nfs-rig")
    assert ds.summary.type == "NFS"
    assert ds.info.nas.remoteHost == "nas.local" and ds.info.nas.remotePath == str(mountpoint)
    host = si.RetrieveContent().rootFolder.childEntity[0].hostFolder.childEntity[0].host[0]
    mounts = host.configManager.storageSystem.fileSystemVolumeInfo.mountInfo
    assert any(getattr(m.volume, "remotePath", None) == str(mountpoint) for m in mounts)

    vm = inventory.create_vm(si, "rig-on-zfs", "nfs-rig")
    vmx = mountpoint / "rig-on-zfs" / "rig-on-zfs.vmx"
    assert vmx.exists()
    subprocess.run(["zfs", "snapshot", f"{dataset}@rig"], check=True)
    vmx.unlink()  # the snapshot, not the live dataset, must hold it now
    # zfs-fuse has no .zfs directory: read the snapshot through a clone.
    clone = f"{zfs_pool.name}/rig-clone"
    subprocess.run(["zfs", "clone", f"{dataset}@rig", clone], check=True)
    try:
        assert (zfs_pool.dataset_mountpoint(clone) / "rig-on-zfs" / "rig-on-zfs.vmx").exists()
    finally:
        zfs_pool.destroy_dataset(clone)
    assert vm.config.files.vmPathName.startswith("[nfs-rig]")


def test_zfs_snapshot_user_property(zfs_pool):
    dataset = zfs_pool.create_dataset("rig/props")
    subprocess.run(["zfs", "snapshot", "-o", "org.truenas.vmware-coord:run=abc123",
                    f"{dataset}@p1"], check=True)
    assert zfs_pool.get(f"{dataset}@p1", "org.truenas.vmware-coord:run") == "abc123"
    assert f"{dataset}@p1" in zfs_pool.snapshots(dataset)


def test_sigterm_removes_model_temp_dirs():
    tmp = Path(tempfile.mkdtemp(prefix="vcsim-tmp-"))
    sim = vcsim.start("-vm", "2", tmpdir=str(tmp))
    assert any(tmp.iterdir())
    sim.stop()
    assert sim.process.returncode == 0
    assert list(tmp.iterdir()) == []
    tmp.rmdir()


def test_a_patch_that_no_longer_applies_fails_loudly(monkeypatch, tmp_path):
    broken = (("snapshot.go", "this anchor is not in the library", "x"),)
    monkeypatch.setattr(vcsim, "PATCHES", broken)
    with pytest.raises(vcsim.RigError, match="found its anchor 0 times"):
        vcsim.apply_patches(tmp_path)


def test_launcher_refuses_bad_flags_and_leaves_nothing(tmp_path):
    binary = vcsim.build()
    for flags in (["-method-delay", "CreateSnapshot_Task=5"], ["-nfs", "no-directory"]):
        proc = subprocess.run([str(binary), *flags], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "TMPDIR": str(tmp_path)})
        assert proc.returncode == 2
        assert flags[0] in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_daemon_that_ignores_sigterm_is_killed_after_its_grace_and_reaped() -> None:
    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    time.sleep(0.3)   # the trap is set
    started = time.monotonic()
    stop_by_pid(stubborn, grace=1.0)
    assert stubborn.returncode == -9 and time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.kill(stubborn.pid, 0)   # reaped: no zombie left behind
