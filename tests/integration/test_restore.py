"""``vmware-coord restore`` end to end: the real CLI against the simulator and zfs-fuse.

A coordinated snapshot, the VM changed afterwards, then a restore under a new name: the
copy's current snapshot is the run's marker snapshot, its disks are on the clone's
datastore, its NICs do not connect; its cleanup leaves no clone, share, datastore or VM.
The simulator's .vmsd double (tools/vcsim/coord_vmsd.go) is what gives a VM registered
from the clone its snapshot tree and devices.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from cli_env import PASSWORD_ENV, CliEnv
from engine_env import NAS, EngineEnv
from pyVmomi import vim
from truenas_vmware_coord.engine.journal import Journal

from tools.rig import inventory
from tools.rig.cli_config import write_cli_config


def _add_nic(vm: vim.VirtualMachine) -> None:
    nic = vim.vm.device.VirtualE1000(
        key=-1, backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True, connected=True))
    inventory.reconfigure(vm, deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)])


@pytest.fixture
def cli(sim, zfs_pool, module_si, tmp_path) -> CliEnv:
    env = EngineEnv.create(sim, zfs_pool, module_si, tmp_path)
    _add_nic(env.vm("app"))
    cli = CliEnv.create(env, tmp_path)
    # The rig has no NFS server: the simulator reads the clone's directory itself.
    write_cli_config(cli.config, env.sim, cli.state_dir, PASSWORD_ENV, [(env.datastore, env.dataset)], [NAS],
                     restore_share="exported")
    return cli


def assert_at_the_snapshots_point(copy: vim.VirtualMachine, run_id: str,
                                  datastore: str) -> vim.vm.SnapshotTree:
    """The restored copy is at the run's point: its current snapshot the run's marker (not one
    taken after), its disks on the restore's datastore, no NIC connecting; returns that snapshot."""
    current = next(s for s in _trees(copy.snapshot.rootSnapshotList)
                   if s.snapshot == copy.snapshot.currentSnapshot)
    assert current.name == f"truenas-vmware-coord:{run_id}"
    assert "after-the-snapshot" not in inventory.snapshot_names(copy)
    disks = [d.backing.fileName for d in copy.config.hardware.device
             if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disks and all(f.startswith(f"[{datastore}] ") for f in disks)
    nics = [d for d in copy.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    assert nics and not any(n.connectable.startConnected for n in nics)
    return current


def _left_behind(cli: CliEnv, doc: dict) -> list[str]:
    """What of a restore still exists: its clone, its share, its datastore, its VM."""
    plan, si = doc["plan"], cli.env.si
    left = []
    zfs = subprocess.run(["zfs", "list", "-H", "-o", "name,sharenfs", "-r", cli.env.pool.name],
                         capture_output=True, text=True, check=True).stdout
    left += [line for line in zfs.splitlines() if line.split("\t")[0] == plan["clone"]]
    left += [f"datastore {ds.name}" for ds in inventory.datastores(si)
             if ds.name == plan["datastore"]]
    left += [f"vm {vm.name}" for vm in inventory.vms(si) if vm.name == plan["new_name"]]
    return left


def test_restore_brings_the_vm_back_at_the_snapshots_point_and_cleanup_leaves_nothing(cli):
    env = cli.env
    name = f"{env.datastore}-app"
    code, report = cli.json("snapshot", env.dataset, "--name", "before")
    assert code == 0, report
    run_id = report["run_id"]
    original = inventory.vm_named(env.si, name)
    # Changed after the snapshot: another VMware snapshot, and a file in its directory.
    inventory.wait(original.CreateSnapshot_Task("after-the-snapshot", "", False, False))
    (env.mountpoint / name / "changed-later.txt").write_text("not in the snapshot\n")

    started = time.monotonic()
    code, doc = cli.json("restore", f"{env.dataset}@before", "--vm", name, "--as", f"{name}-copy")
    assert code == 0, json.dumps(doc, indent=1)
    plan = doc["plan"]
    assert doc["state"] == "restored" and plan["new_name"] == f"{name}-copy"
    assert plan["revert_to"] == f"truenas-vmware-coord:{run_id}" and "reverted to" in plan["point"]
    copy = inventory.vm_named(env.si, f"{name}-copy")
    current = assert_at_the_snapshots_point(copy, run_id, plan["datastore"])
    assert copy.runtime.powerState == "poweredOff"
    assert doc["notes"][0] == (f"read back: current snapshot truenas-vmware-coord:{run_id}, poweredOff, "
                               "0 of 1 NIC(s) connect at power-on")
    clone_dir = env.pool.dataset_mountpoint(plan["clone"]) / name
    assert (clone_dir / f"{name}.vmx").exists() and not (clone_dir / "changed-later.txt").exists()
    # The original is untouched: its own snapshot tree and file.
    assert inventory.snapshot_names(original) == ["after-the-snapshot"]
    assert (env.mountpoint / name / "changed-later.txt").exists()
    print(f"restore took {time.monotonic() - started:.1f}s")

    # reconcile leaves the copy's marked snapshot alone (it is the restore's point).
    assert cli.run("reconcile").returncode == 0
    assert current.name in inventory.snapshot_names(copy)

    code, listed = cli.json("restore", "list")
    assert code == 0 and [r["restore_id"] for r in listed] == [doc["restore_id"]]
    code, cleaned = cli.json("restore", "cleanup", doc["restore_id"])
    assert code == 0, cleaned
    assert cleaned["state"] == "cleaned"
    assert _left_behind(cli, doc) == []
    assert env.pool.snapshots(env.dataset) == [f"{env.dataset}@before"]


def test_a_copy_powered_on_is_cleaned_up_only_when_forced(cli):
    env = cli.env
    name = f"{env.datastore}-app"
    assert cli.run("snapshot", env.dataset, "--name", "s1").returncode == 0
    code, doc = cli.json("restore", f"{env.dataset}@s1", "--vm", name, "--power-on")
    assert code == 0, doc
    copy = inventory.vm_named(env.si, doc["plan"]["new_name"])
    assert copy.runtime.powerState == "poweredOn" and copy.runtime.question is None
    refused = cli.run("restore", "cleanup", doc["restore_id"])
    assert refused.returncode == 2 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert copy.runtime.powerState == "poweredOn"
    assert cli.run("restore", "cleanup", doc["restore_id"], "--force").returncode == 0
    assert _left_behind(cli, doc) == []


def test_attach_disk_is_read_only_by_default_and_cleanup_detaches_it(cli):
    env = cli.env
    name = f"{env.datastore}-app"
    helper = env.vm("helper", power_on=False)
    assert cli.run("snapshot", env.dataset, "--name", "s2").returncode == 0
    code, doc = cli.json("restore", f"{env.dataset}@s2", "--vm", name, "--host", helper.runtime.host.name)
    assert code == 0, doc
    code, attached = cli.json("restore", "attach-disk", doc["restore_id"], "--disk", "0", "--to", helper.name)
    assert code == 0, attached
    disk = next(d for d in helper.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)
                and d.backing.fileName.startswith(f"[{doc['plan']['datastore']}]"))
    assert disk.backing.diskMode == "independent_nonpersistent"
    assert cli.run("restore", "cleanup", doc["restore_id"]).returncode == 0
    assert not any(isinstance(d, vim.vm.device.VirtualDisk) and d.backing.fileName.startswith(
        f"[{doc['plan']['datastore']}]") for d in helper.config.hardware.device)
    assert _left_behind(cli, doc) == []


def test_cleanup_after_the_copy_and_its_datastore_were_removed_by_hand(cli):
    env = cli.env
    assert cli.run("snapshot", env.dataset, "--name", "s3").returncode == 0
    code, doc = cli.json("restore", f"{env.dataset}@s3", "--vm", f"{env.datastore}-app")
    assert code == 0, doc
    copy = inventory.vm_named(env.si, doc["plan"]["new_name"])
    host = copy.runtime.host
    copy.UnregisterVM()
    datastore = next(ds for ds in inventory.datastores(env.si) if ds.name == doc["plan"]["datastore"])
    host.configManager.datastoreSystem.RemoveDatastore(datastore)
    proc = cli.run("restore", "cleanup", doc["restore_id"])
    assert proc.returncode == 0, proc.stderr
    assert _left_behind(cli, doc) == []


@pytest.mark.parametrize(("args", "field", "problem"), [
    (["@nosuch", "--vm", "app"], "snapshot", "does not exist"),
    (["@bare", "--vm", "app"], "snapshot", "has no manifest of this product"),
    (["@ok", "--vm", "nosuch"], "--vm", "no VM named 'nosuch'"),
    (["@ok", "--vm", "app", "--as", "app"], "--as", "exists already"),
    (["@ok", "--vm", "app", "--host", "nosuch"], "--host", "no host named 'nosuch'"),
    (["@ok", "--vm", "app", "--force"], "--force", "does not apply"),
])
def test_bad_input_is_refused_before_anything_is_made(cli, args, field, problem):
    env = cli.env
    subprocess.run(["zfs", "snapshot", f"{env.dataset}@bare"], check=True)   # not coordinated
    assert cli.run("snapshot", env.dataset, "--name", "ok").returncode == 0
    args = [f"{env.dataset}{args[0]}", *(a.replace("app", f"{env.datastore}-app") if a == "app" else a
                                         for a in args[1:])]
    before = _everything(cli)
    proc = cli.run("restore", *args)
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and problem in proc.stderr and "Traceback" not in proc.stderr
    assert _everything(cli) == before


def test_a_share_zfs_cannot_make_takes_the_clone_away_again(sim, zfs_pool, module_si, tmp_path):
    """The default sharing, zfs set sharenfs, on zfs-fuse: the rig has no NFS server, so the
    share fails and the clone made before it is destroyed again."""
    env = EngineEnv.create(sim, zfs_pool, module_si, tmp_path)
    env.vm("app")
    cli = CliEnv.create(env, tmp_path)
    assert cli.run("snapshot", env.dataset, "--name", "s").returncode == 0
    before = _everything(cli)
    proc = cli.run("restore", f"{env.dataset}@s", "--vm", f"{env.datastore}-app")
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert "cannot share" in proc.stderr and "everything it made was taken away again" in proc.stderr
    assert _everything(cli) == before


def test_sigkill_before_registration_is_undone_by_reconcile(cli, tmp_path):
    env = cli.env
    assert cli.run("snapshot", env.dataset, "--name", "k").returncode == 0
    # A zfs that hangs reading the clone's mountpoint: killed between the clone and the share.
    fake = tmp_path / "bin"
    fake.mkdir()
    real = shutil.which("zfs")
    (fake / "zfs").write_text(f'#!/bin/sh\ncase "$*" in *mountpoint*-restore-*) sleep 60;; esac\n'
                              f'exec {real} "$@"\n')
    (fake / "zfs").chmod(0o755)
    proc = cli.start("restore", f"{env.dataset}@k", "--vm", f"{env.datastore}-app", path_prefix=fake)
    try:
        record = _wait_for(cli, lambda r: any(s.step.value == "clone" and s.state.value == "done"
                                              for s in r.steps))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    clone = record.plan["clone"]
    assert record.state.value == "restoring" and env.pool.get(clone, "origin") == f"{env.dataset}@k"
    result = cli.run("reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"restore {record.restore_id}: undone: interrupted before registration" in result.stdout
    after = Journal(cli.journal_path(), readonly=True).restore(record.restore_id)
    assert after is not None and after.state.value == "undone"
    assert [s.state.value for s in after.steps] == ["closed"]
    assert subprocess.run(["zfs", "list", clone], capture_output=True).returncode != 0
    assert env.pool.snapshots(env.dataset) == [f"{env.dataset}@k"]


def test_sigkill_after_registration_is_finished_by_reconcile_not_powered_on(start_vcsim, zfs_pool, tmp_path):
    # A simulator of its own whose reverts answer late: the restore is killed while reverting.
    sim = start_vcsim("-vm", "0", "-method-delay", "RevertToSnapshot_Task:3000")
    si = inventory.connect_to(sim)
    env = EngineEnv.create(sim, zfs_pool, si, tmp_path)
    _add_nic(env.vm("app"))
    cli = CliEnv.create(env, tmp_path)
    write_cli_config(cli.config, sim, cli.state_dir, PASSWORD_ENV, [(env.datastore, env.dataset)], [NAS],
                     restore_share="exported")
    code, report = cli.json("snapshot", env.dataset, "--name", "k2")
    assert code == 0, report
    proc = cli.start("restore", f"{env.dataset}@k2", "--vm", f"{env.datastore}-app", "--power-on")
    try:
        record = _wait_for(cli, lambda r: any(s.step.value == "register" and s.state.value == "done"
                                              for s in r.steps))
        time.sleep(0.5)   # the revert is under way
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    result = cli.run("reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"restore {record.restore_id}: finished" in result.stdout
    after = Journal(cli.journal_path(), readonly=True).restore(record.restore_id)
    assert after is not None and after.state.value == "restored"
    copy = inventory.vm_named(si, record.new_name)
    current = next(s for s in _trees(copy.snapshot.rootSnapshotList)
                   if s.snapshot == copy.snapshot.currentSnapshot)
    assert current.name == f"truenas-vmware-coord:{report['run_id']}"
    assert not any(d.connectable.startConnected for d in copy.config.hardware.device
                   if isinstance(d, vim.vm.device.VirtualEthernetCard))
    assert copy.runtime.powerState == "poweredOff"    # --power-on was asked, reconcile never starts a VM
    code, cleaned = cli.json("restore", "cleanup", record.restore_id)
    assert code == 0 and _left_behind(cli, cleaned) == []
    si.content.sessionManager.Logout()


def _wait_for(cli: CliEnv, done, timeout: float = 30):
    """The first restore in the journal, once ``done(record)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cli.journal_path().exists():
            records = Journal(cli.journal_path(), readonly=True).restores()
            if records and done(records[0]):
                return records[0]
        time.sleep(0.05)
    raise AssertionError("the restore did not get there in time")


def _trees(trees):
    for tree in trees or ():
        yield tree
        yield from _trees(tree.childSnapshotList)


def _everything(cli: CliEnv) -> tuple:
    si = cli.env.si
    zfs = subprocess.run(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", cli.env.pool.name],
                         capture_output=True, text=True, check=True).stdout
    return (zfs, sorted(ds.name for ds in inventory.datastores(si)),
            sorted(vm.name for vm in inventory.vms(si)))
