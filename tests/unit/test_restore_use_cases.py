"""The restore use cases over in-memory doubles: validation before anything is made, the
journaled steps, the undo of a failed restore, cleanup, and reconcile of interrupted ones."""

from __future__ import annotations

import dataclasses
import os
import sqlite3

import pytest
from fake_restore import (
    DATASET,
    DEAD_PID,
    MARKER,
    NAS,
    SNAPSHOT,
    FakeRestoreHypervisor,
    FakeZfsHost,
    manifest_entry,
    restore_parts,
)
from truenas_vmware_coord.app.restore import restore
from truenas_vmware_coord.app.restore_attach import attach_disk
from truenas_vmware_coord.app.restore_cleanup import cleanup, list_restores, reconcile_restores
from truenas_vmware_coord.app.restore_steps import RestoreFailed
from truenas_vmware_coord.cli import render
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.model import PowerState
from truenas_vmware_coord.domain.restore import RestoreRequest, RestoreState, RestoreStep, point_of
from truenas_vmware_coord.engine.journal import ActionState, Journal, JournalError
from truenas_vmware_coord.engine.ports import Refused
from truenas_vmware_coord.zfs.clone import destroy_clone


def _made(hv: FakeRestoreHypervisor, zfs: FakeZfsHost) -> tuple:
    return sorted(zfs.props), sorted(hv.datastores.values()), sorted(vm.name for vm in hv.vms.values())


@pytest.mark.parametrize(("request_", "vms", "field", "problem"), [
    (RestoreRequest("tank/vm@nosuch", "app"), None, "snapshot", "does not exist"),
    (RestoreRequest("tank/vm", "app"), None, "snapshot", "is not DATASET@SNAPSHOT"),
    (RestoreRequest(SNAPSHOT, "db"), None, "--vm", "no VM named 'db' in the manifest"),
    (RestoreRequest(SNAPSHOT, "app"), [manifest_entry(provider="libvirt")], "--vm", "libvirt guest"),
    (RestoreRequest(SNAPSHOT, "app", new_name="app"), None, "--as", "a VM named 'app' exists already"),
    (RestoreRequest(SNAPSHOT, "app", host="esx9"), None, "--host", "no host named 'esx9'"),
    (RestoreRequest(SNAPSHOT, "app", host="esx2"), None, "--host",
     "esx2 mounts no NFS datastore from this NAS"),
    (RestoreRequest(SNAPSHOT, "app"), [manifest_entry(snapshot_name="someone-else")], "--vm",
     "does not carry this run's marker"),
])
def test_bad_input_names_the_field_and_makes_nothing(tmp_path, hv, zfs, request_, vms, field, problem):
    parts = restore_parts(tmp_path, hv, zfs, vms)
    before = _made(hv, zfs)
    with pytest.raises(InvalidInput) as caught:
        restore(parts, request_)
    assert caught.value.errors[0].field == field and problem in caught.value.errors[0].message
    assert _made(hv, zfs) == before and parts.journal.restores() == []
    assert not any(c[1] in ("clone", "set", "destroy") for c in zfs.calls)


def test_a_snapshot_without_the_products_run_is_refused(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    zfs.props["tank/vm@manual"] = {}
    with pytest.raises(InvalidInput, match="has no manifest of this product"):
        restore(parts, RestoreRequest("tank/vm@manual", "app"))


def test_a_host_not_connected_and_no_nas_addresses_are_refused(tmp_path, hv, zfs):
    hv.hosts_[0] = hv.hosts_[0].__class__("host-1", "esx1", False, (NAS,))
    with pytest.raises(InvalidInput, match="esx1 is not connected"):
        restore(restore_parts(tmp_path, hv, zfs), RestoreRequest(SNAPSHOT, "app"))
    with pytest.raises(InvalidInput) as caught:
        restore(restore_parts(tmp_path / "b", FakeRestoreHypervisor(), zfs, nas=()),
                RestoreRequest(SNAPSHOT, "app"))
    assert caught.value.errors[0].field == "config.nas.addresses"


@pytest.mark.parametrize(("export", "problem"), [
    (None, "which is not an NFS datastore"),
    ("/mnt/tank/other", "which tank/vm (at /mnt/tank/vm) does not hold"),
])
def test_a_vmx_on_a_datastore_this_dataset_does_not_hold_is_refused(tmp_path, hv, zfs, export, problem):
    hv.exports["nfs01"] = export
    with pytest.raises(InvalidInput, match=problem.replace("(", r"\(").replace(")", r"\)")):
        restore(restore_parts(tmp_path, hv, zfs), RestoreRequest(SNAPSHOT, "app"))


def test_a_datastore_below_the_datasets_mountpoint_is_mounted_from_the_same_place_in_the_clone(
        tmp_path, hv, zfs):
    hv.exports["nfs01"] = "/mnt/tank/vm/esx"
    result = restore(restore_parts(tmp_path, hv, zfs), RestoreRequest(SNAPSHOT, "app"))
    assert result.plan.export_subdir == "esx"
    assert hv.exports[result.plan.datastore] == f"/mnt/{result.plan.clone}/esx"


def test_disks_on_another_datastore_are_refused(tmp_path, hv, zfs):
    hv.vms["vm-1"].disks.append("[san01] app/data.vmdk")
    with pytest.raises(InvalidInput, match=r"disks on other datastores .*\[san01\]"):
        restore(restore_parts(tmp_path, hv, zfs), RestoreRequest(SNAPSHOT, "app"))


def test_the_files_are_taken_from_where_the_manifest_recorded_them_not_where_the_vm_is_now(
        tmp_path, hv, zfs):
    # Moved (storage vMotion) after the snapshot: the clone holds it where it was then.
    hv.vms["vm-1"].vmx_path, hv.vms["vm-1"].disks = "[san01] app/app.vmx", ["[san01] app/app.vmdk"]
    recorded = manifest_entry(vmx_path="[nfs01] app/app.vmx", disk_files=["[nfs01] app/app.vmdk"])
    result = restore(restore_parts(tmp_path, hv, zfs, [recorded]), RestoreRequest(SNAPSHOT, "app"))
    assert hv.vms[result.vm_moref].vmx_path == f"[{result.plan.datastore}] app/app.vmx"
    # A disk that was elsewhere at snapshot time is refused although the VM has none there now.
    elsewhere = manifest_entry(vmx_path="[nfs01] app/app.vmx",
                               disk_files=["[nfs01] app/app.vmdk", "[san01] app/data.vmdk"])
    with pytest.raises(InvalidInput, match=r"disks on other datastores .*\[san01\]"):
        restore(restore_parts(tmp_path / "2", hv, zfs, [elsewhere]), RestoreRequest(SNAPSHOT, "app"))


def test_restore_journals_each_step_reverts_to_the_marker_and_leaves_nics_off(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    seen: list[int] = []
    result = restore(parts, RestoreRequest(SNAPSHOT, "app", new_name="app-copy"),
                     lambda p, _d: seen.append(p))
    plan = result.plan
    assert result.state is RestoreState.RESTORED and seen[0] == 0 and seen[-1] == 100
    assert [s.step for s in result.steps] == [RestoreStep.CLONE, RestoreStep.SHARE, RestoreStep.DATASTORE,
                                              RestoreStep.REGISTER, RestoreStep.REVERT, RestoreStep.NETWORK]
    assert all(s.state is ActionState.DONE for s in result.steps)
    assert zfs.props[plan.clone]["origin"] == SNAPSHOT and zfs.props[plan.clone]["sharenfs"] == \
        "rw=esx1,no_root_squash"
    copy = hv.vms[result.vm_moref]
    assert hv.layout(copy.moref).current_snapshot == MARKER and copy.nics == [False]
    assert copy.power is PowerState.OFF and "power_on" not in hv.calls
    assert copy.vmx_path == f"[{plan.datastore}] app/app.vmx" and plan.host_name == "esx1"
    assert "reverted to the VMware snapshot" in plan.point
    assert result.notes[0] == (f"read back: current snapshot {MARKER}, poweredOff, "
                               "0 of 1 NIC(s) connect at power-on")
    assert result.to_dict()["steps"][0] == {"step": "clone", "state": "done", "ref": plan.clone,
                                            "error": None}
    assert hv.closed == 1


def test_crash_consistent_and_powered_off_vms_get_no_revert(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs, [manifest_entry(consistency="crash", achieved="crash",
                                                             snapshot_name=None)])
    result = restore(parts, RestoreRequest(SNAPSHOT, "app", power_on=True, connect_network=True))
    assert result.plan.revert_to is None and "crash-consistent" in result.plan.point
    assert RestoreStep.REVERT not in [s.step for s in result.steps] and "revert" not in hv.calls
    assert hv.vms[result.vm_moref].power is PowerState.ON and hv.vms[result.vm_moref].nics == [True]
    assert point_of(manifest_entry(consistency="excluded", achieved=None, snapshot_name=None)) == (
        None, "no revert: the VM was excluded by its policy (not prepared), so the clone's disks are the "
              "point, as after a power loss")
    assert point_of(manifest_entry(consistency="powered_off", achieved="power_off"))[1].startswith(
        "no revert: the VM was powered off by its policy")


def test_a_failed_step_takes_away_everything_made_before_it(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    hv.fail["register"] = Refused("the file [x] app/app.vmx was not found", "NotFound")
    before = _made(hv, zfs)
    with pytest.raises(RestoreFailed, match="not found; everything it made was taken away again") as caught:
        restore(parts, RestoreRequest(SNAPSHOT, "app"))
    result = caught.value.result
    assert result.state is RestoreState.UNDONE and _made(hv, zfs) == before
    states = {s.step: s.state for s in result.steps}
    assert states == {RestoreStep.CLONE: ActionState.CLOSED, RestoreStep.SHARE: ActionState.CLOSED,
                      RestoreStep.DATASTORE: ActionState.CLOSED, RestoreStep.REGISTER: ActionState.FAILED}
    assert zfs.props[DATASET]["sharenfs"] == "off"


def test_cleanup_refuses_a_running_copy_unless_forced_and_leaves_nothing(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs)
    result = restore(parts, RestoreRequest(SNAPSHOT, "app", power_on=True))
    with pytest.raises(InvalidInput) as caught:
        cleanup(parts, result.restore_id)
    assert caught.value.errors[0].field == "--force"
    assert parts.journal.restore(result.restore_id).state is RestoreState.RESTORED
    assert hv.vms[result.vm_moref].power is PowerState.ON
    cleaned = cleanup(parts, result.restore_id, force=True)
    assert cleaned.state is RestoreState.CLEANED and _made(hv, zfs) == before
    assert {s.state for s in cleaned.steps} == {ActionState.CLOSED}
    assert hv.calls[-3:] == ["power_off", "unregister", "unmount"]
    assert cleanup(parts, result.restore_id).notes == ("nothing left to clean up",)


def test_cleanup_detaches_an_attached_disk_first(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    result = restore(parts, RestoreRequest(SNAPSHOT, "app"))
    hv.vms["vm-1"].power = PowerState.OFF
    with pytest.raises(InvalidInput, match="has 1 disk"):
        attach_disk(parts, result.restore_id, 1, "app")
    with pytest.raises(InvalidInput, match="no VM named 'nosuch'"):
        attach_disk(parts, result.restore_id, 0, "nosuch")
    attached = attach_disk(parts, result.restore_id, 0, "app")
    disk = f"[{result.plan.datastore}] app/app.vmdk"
    assert disk in hv.vms["vm-1"].disks and "read-only" in attached.notes[0]
    cleanup(parts, result.restore_id)
    assert disk not in hv.vms["vm-1"].disks
    assert hv.calls.index("detach_disk") < hv.calls.index("unregister") < hv.calls.index("unmount")


def _interrupted(parts, hv, zfs, fail_at: str) -> str:
    """A restore whose process 'died' at ``fail_at``: the exception stands for the kill."""
    hv.fail[fail_at] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        restore(parts, RestoreRequest(SNAPSHOT, "app"))
    record = parts.journal.restores()[0]
    with sqlite3.connect(parts.journal.path) as db:   # its owner is gone
        db.execute("UPDATE restores SET owner_pid = ?", (DEAD_PID,))
    return record.restore_id


def test_reconcile_undoes_a_restore_interrupted_before_registration(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs)
    restore_id = _interrupted(parts, hv, zfs, "register")
    record = parts.journal.restore(restore_id)
    assert record.state is RestoreState.RESTORING
    assert record.made(RestoreStep.REGISTER).state is ActionState.INTENT
    assert reconcile_restores(parts) == [{"restore_id": restore_id,
                                          "result": "undone: interrupted before registration"}]
    assert parts.journal.restore(restore_id).state is RestoreState.UNDONE and _made(hv, zfs) == before
    assert reconcile_restores(parts) == []


def test_reconcile_finishes_a_restore_interrupted_after_registration_without_powering_on(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    restore_id = _interrupted(parts, hv, zfs, "revert")
    results = reconcile_restores(parts)
    assert results[0]["result"].startswith("finished:")
    record = parts.journal.restore(restore_id)
    assert record.state is RestoreState.RESTORED and "power_on" not in hv.calls
    copy = hv.layout(hv.find_vm(record.new_name))
    assert copy.current_snapshot == MARKER and copy.nics_start_connected == (False,)


def test_a_live_restore_is_left_to_its_process(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    hv.fail["register"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        restore(parts, RestoreRequest(SNAPSHOT, "app"))
    assert parts.journal.restores()[0].owner_pid == os.getpid()
    assert reconcile_restores(parts) == []


def test_an_older_journal_gains_the_restore_tables_and_a_read_only_one_lists_none(tmp_path):
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with sqlite3.connect(path) as db:   # a journal from before restores existed
        db.executescript("DROP TABLE restore_steps; DROP TABLE restores;")
    assert Journal(path, readonly=True).restores() == []
    journal = Journal(path)
    journal.start_restore({"restore_id": "r1", "run_id": "x", "snapshot": "a@b", "vm_name": "v",
                           "new_name": "w"}, 1.0, 42)
    step = journal.restore_intent("r1", RestoreStep.CLONE, 2.0, "a-restore-r1")
    journal.restore_update(step, ActionState.DONE, 3.0)
    record = journal.restore("r1")
    assert record.state is RestoreState.RESTORING and record.owner_pid == 42
    assert record.steps[0].ref == "a-restore-r1" and record.steps[0].done_at == 3.0
    assert record.made(RestoreStep.CLONE) is record.steps[0]
    journal.set_restore_state("r1", RestoreState.CLEANED, 4.0)
    assert journal.restore("r1").ended_at == 4.0 and journal.restores(present_only=True) == []


def test_destroy_clone_leaves_anything_but_the_restores_clone_alone(zfs):
    with pytest.raises(ValueError, match="not a clone"):
        destroy_clone(zfs, DATASET, SNAPSHOT)
    zfs.props["tank/other"] = {"origin": "tank/x@y"}
    with pytest.raises(ValueError, match="clone of tank/x@y"):
        destroy_clone(zfs, "tank/other", SNAPSHOT)
    assert destroy_clone(zfs, "tank/gone", SNAPSHOT) is False
    assert DATASET in zfs.props and "tank/other" in zfs.props
    assert not any(c[1] == "destroy" for c in zfs.calls)


def test_the_summary_says_the_point_and_how_to_clean_up(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    result = restore(parts, RestoreRequest(SNAPSHOT, "app"))
    text = render.restore_summary(result.to_dict())
    assert f"point: reverted to the VMware snapshot {MARKER}" in text
    assert f"on esx1: datastore {result.plan.datastore} = {NAS}:{result.plan.clone}" in text
    assert "powered off, NICs not connected at power-on" in text
    assert f"'vmware-coord restore cleanup {result.restore_id}'" in text
    listed = list_restores(parts)
    assert [d["state"] for d in listed] == ["restored"]
    assert result.restore_id in render.restores_table(listed).splitlines()[2]


class _FillingJournal(Journal):
    """A journal whose disk fills after ``writes`` writes, until ``free()`` (a real JournalError)."""

    def __init__(self, path, writes: int) -> None:
        super().__init__(path)
        self.left = writes

    def free(self) -> None:
        self.left = 10**6

    def _tx(self):
        self.left -= 1
        if self.left < 0:
            raise JournalError(f"journal {self.path} cannot be written: the file system is full")
        return super()._tx()


def test_a_disk_that_fills_at_any_write_of_a_restore_leaves_nothing_once_reconciled(tmp_path, hv, zfs):
    """Unplanned: the state directory's disk fills mid-restore. The restore stops with the
    journal's own error; what it made is known from the intents, so once there is room again
    reconcile takes it away (before registration) or finishes it (after), never a stray clone."""
    before = _made(hv, zfs)
    writes = 0
    while True:
        writes += 1
        base = restore_parts(tmp_path / str(writes), hv, zfs)
        journal = _FillingJournal(base.journal.path, writes)
        parts = dataclasses.replace(base, journal=journal)
        try:
            result = restore(parts, RestoreRequest(SNAPSHOT, "app"))
        except JournalError as exc:
            assert "file system is full" in str(exc)
        else:   # every write fitted: the restore is whole
            journal.free()
            cleanup(parts, result.restore_id)
            break
        journal.free()
        with sqlite3.connect(journal.path) as db:   # the process that failed is gone
            db.execute("UPDATE restores SET owner_pid = ?", (DEAD_PID,))
        settled = reconcile_restores(parts)
        for record in journal.restores():
            if record.state is RestoreState.RESTORED:   # finished after registration: clean it up
                cleanup(parts, record.restore_id, force=True)
        assert _made(hv, zfs) == before, (writes, settled)
    assert _made(hv, zfs) == before and writes > 6, writes   # each write of a restore met a full disk
