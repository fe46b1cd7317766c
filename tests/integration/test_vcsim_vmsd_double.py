"""The simulator's test doubles for restores (tools/vcsim/coord_vmsd.go), through pyVmomi:
a VM registered from a copy of its directory gets the snapshot tree and devices recorded
there, asks "moved or copied?" on its first power-on, and a NAS datastore mounted by name
can be removed again."""

from __future__ import annotations

import shutil
import time

from pyVmomi import vim

from tools.rig import inventory


def test_a_vm_registered_from_a_copied_directory_gets_its_tree_devices_and_question(module_si, tmp_path):
    si = module_si
    source = tmp_path / "dsA"
    source.mkdir()
    datastore = inventory.add_nfs_datastore(si, str(source), "nas.test.local")
    vm = inventory.create_vm(si, "orig", datastore)
    inventory.wait(vm.CreateSnapshot_Task("first", "", False, False))
    inventory.wait(vm.CreateSnapshot_Task("second", "", False, False))
    inventory.wait(vm.snapshot.rootSnapshotList[0].snapshot.RevertToSnapshot_Task(suppressPowerOn=True))
    copy_dir = tmp_path / "copy"
    shutil.copytree(source, copy_dir)
    host = vm.runtime.host
    mounted = host.configManager.datastoreSystem.CreateNasDatastore(vim.host.NasVolume.Specification(
        remoteHost="nas.test.local", remotePath=str(copy_dir), localPath="copied-ds", accessMode="readWrite",
        type="NFS"))
    assert mounted.name == "copied-ds" and mounted.summary.url == str(copy_dir)
    dc = si.RetrieveContent().rootFolder.childEntity[0]
    copy = inventory.wait(dc.vmFolder.RegisterVM_Task(path="[copied-ds] orig/orig.vmx", name="copy",
                                                      asTemplate=False, pool=host.parent.resourcePool,
                                                      host=host))
    tree = copy.snapshot.rootSnapshotList
    assert [t.name for t in tree] == ["first"] and [t.name for t in tree[0].childSnapshotList] == ["second"]
    assert copy.snapshot.currentSnapshot == tree[0].snapshot    # the recorded current one
    assert tree[0].snapshot != vm.snapshot.rootSnapshotList[0].snapshot
    disks = [d.backing.fileName for d in copy.config.hardware.device
             if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disks == ["[copied-ds] orig/orig_0.vmdk"]

    uuid = copy.config.uuid
    task = copy.PowerOnVM_Task()
    question = _question(copy)
    assert question.text.startswith("msg.uuid.altered") and task.info.state == "running"
    copy.AnswerVM(question.id, next(c.key for c in question.choice.choiceInfo if "Copied" in c.label))
    inventory.wait(task)
    assert copy.runtime.powerState == "poweredOn" and copy.runtime.question is None
    assert copy.config.uuid != uuid   # "I copied it": a new identity
    inventory.wait(copy.PowerOffVM_Task())
    copy.UnregisterVM()
    host.configManager.datastoreSystem.RemoveDatastore(mounted)
    assert "copied-ds" not in [ds.name for ds in inventory.datastores(si)]
    assert inventory.snapshot_names(vm) == ["first", "second"]   # the original keeps its own


def _question(vm: vim.VirtualMachine):
    for _ in range(100):
        if vm.runtime.question is not None:
            return vm.runtime.question
        time.sleep(0.05)
    raise AssertionError("no question was asked")
