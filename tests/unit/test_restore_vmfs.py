"""The VMFS path of a restore over in-memory doubles: a zvol's clone exposed as a new LUN of
the targets that export the original, its VMFS copy resignatured and renamed, everything
taken away again in VMware's order (unmount and detach, then the LUN, then the clone)."""

from __future__ import annotations

import dataclasses

import pytest
from fake_restore import (
    DEAD_PID,
    LUN,
    ZVOL,
    ZVOL_MARKER,
    ZVOL_SNAPSHOT,
    FakeRestoreHypervisor,
    FakeZfsHost,
    restore_parts,
    vmfs_entry,
)
from truenas_vmware_coord.app.restore import restore
from truenas_vmware_coord.app.restore_cleanup import cleanup, reconcile_restores
from truenas_vmware_coord.app.restore_ports import NoLunExport
from truenas_vmware_coord.app.restore_preview import preview
from truenas_vmware_coord.app.restore_steps import RestoreFailed
from truenas_vmware_coord.cli import render
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.restore import (
    RestoreRequest,
    RestoreState,
    RestoreStep,
    Transport,
    parse_lun_ref,
)
from truenas_vmware_coord.engine.journal import ActionState
from truenas_vmware_coord.engine.ports import NoAnswer, Refused


def _made(hv: FakeRestoreHypervisor, zfs: FakeZfsHost, parts) -> tuple:
    return (sorted(zfs.props), sorted(hv.datastores.values()), sorted(vm.name for vm in hv.vms.values()),
            sorted(parts.luns.extents), sorted(hv.luns_seen))


def test_a_zvols_vm_comes_back_on_a_new_lun_resignatured_under_the_restores_name(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    result = restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db", new_name="db-copy"))
    plan = result.plan
    assert plan.transport is Transport.VMFS and plan.source_lun == LUN and plan.nas_address == ""
    assert [s.step for s in result.steps] == [RestoreStep.CLONE, RestoreStep.SHARE, RestoreStep.DATASTORE,
                                              RestoreStep.REGISTER, RestoreStep.REVERT, RestoreStep.NETWORK]
    assert zfs.props[plan.clone] == {"origin": ZVOL_SNAPSHOT, "type": "volume"}
    extent, naa = parse_lun_ref(result.steps[1].ref)
    assert parts.luns.extents[extent] == (plan.clone, naa) and naa != LUN and naa in hv.luns_seen
    # The copy ESXi named "snap-…-san01" is the restore's datastore, on the clone's LUN only.
    assert hv.extents[plan.datastore] == (f"naa.{naa}",)
    assert plan.datastore == f"san01-restore-{plan.restore_id}"
    assert result.datastore_moref == hv.find_datastore(plan.datastore)
    copy = hv.vms[result.vm_moref]
    assert copy.vmx_path == f"[{plan.datastore}] db/db.vmx"
    assert copy.disks == [f"[{plan.datastore}] db/db.vmdk"]
    assert hv.layout(copy.moref).current_snapshot == ZVOL_MARKER and copy.nics == [False]
    assert result.to_dict()["plan"]["transport"] == "vmfs"
    assert (f"on esx1: datastore {plan.datastore} = the VMFS copy on LUN naa.{naa} of {plan.clone}"
            in render.restore_summary(result.to_dict()))
    # The original datastore and LUN are untouched.
    assert hv.extents["san01"] == (f"naa.{LUN}",) and parts.luns.extents["1"] == (ZVOL, LUN)


def test_cleanup_unmounts_and_detaches_then_takes_the_lun_away_then_the_clone(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs, parts)
    result = restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    naa = parse_lun_ref(result.steps[1].ref)[1]
    # Both hosts discovered the clone's LUN (esx2 rescanned meanwhile): both drop it, gone.
    hv.hosts_ = [dataclasses.replace(h, luns=(*h.luns, naa)) for h in hv.hosts_]
    hv.calls.clear()
    cleaned = cleanup(parts, result.restore_id)
    assert cleaned.state is RestoreState.CLEANED and _made(hv, zfs, parts) == before
    assert hv.calls == ["unregister", "unmount", "hosts", "rescan host-1", "rescan host-2"]
    assert [c[1] for c in zfs.calls[-2:]] == ["get", "destroy"] and zfs.calls[-1][-1] == result.plan.clone


@pytest.mark.parametrize(("change", "field", "problem"), [
    (lambda hv, luns: hv.extents.update(san01=(f"naa.{LUN}", "naa.6589cfc0000000000000000000000bbb")),
     "--vm", "san01 spans 2 LUNs"),
    (lambda hv, luns: hv.extents.update(san01=("naa.6589cfc0000000000000000000000ccc",)),
     "--vm", "which is not on tank/lun0: restore it from a snapshot of the zvol behind san01"),
    (lambda hv, luns: hv.extents.pop("san01"), "--vm", "which is not a VMFS datastore"),
    (lambda hv, luns: luns.extents.clear(), "snapshot", "no iSCSI extent of this NAS exports tank/lun0"),
    (lambda hv, luns: hv.hosts_.pop(0), "--host", "no connected host reaches the clone: every one does not "
                                                  f"see LUN naa.{LUN} of [san01]"),
    (lambda hv, luns: setattr(luns, "refuse", "the iSCSI service is stopped"), "snapshot",
     "the iSCSI service is stopped"),
])
def test_what_the_vmfs_path_cannot_do_is_refused_before_anything_is_made(tmp_path, hv, zfs, change, field,
                                                                         problem):
    parts = restore_parts(tmp_path, hv, zfs)
    change(hv, parts.luns)
    before = _made(hv, zfs, parts)
    with pytest.raises(InvalidInput) as caught:
        restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    assert caught.value.errors[0].field == field and problem in caught.value.errors[0].message
    assert _made(hv, zfs, parts) == before and parts.journal.restores() == []


def test_a_host_that_does_not_see_the_original_lun_is_refused_naming_the_ones_that_do(tmp_path, hv, zfs):
    with pytest.raises(InvalidInput) as caught:
        restore(restore_parts(tmp_path, hv, zfs), RestoreRequest(ZVOL_SNAPSHOT, "db", host="esx2"))
    assert caught.value.errors[0].message == (
        f"esx2 does not see LUN naa.{LUN} of [san01]: it is not logged in to the iSCSI target that exports "
        "it, so it would not see the clone's LUN either; hosts that do: esx1")


def test_off_truenas_a_zvol_restore_is_refused_saying_what_to_do(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    parts.luns = NoLunExport("done only through TrueNAS's iSCSI API")
    with pytest.raises(InvalidInput) as caught:
        restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    assert caught.value.errors[0].field == "snapshot"
    assert caught.value.errors[0].message == (
        "tank/lun0 is a zvol (a VMFS datastore's LUN): done only through TrueNAS's iSCSI API")
    assert not any(c[1] == "clone" for c in zfs.calls)


def test_a_lun_the_host_never_sees_takes_the_lun_and_the_clone_away_again(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs, parts)
    hv.fail["mount_vmfs_copy"] = Refused("after a rescan, esx1 sees no unresolved VMFS copy on LUN naa.x")
    with pytest.raises(RestoreFailed, match="no unresolved VMFS copy.*everything it made was taken away"):
        restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    assert _made(hv, zfs, parts) == before


def test_a_copy_resignatured_but_not_renamed_is_found_by_its_lun_and_taken_away(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs, parts)
    hv.fail["rename"] = NoAnswer("no answer to Rename_Task")
    with pytest.raises(RestoreFailed) as caught:
        restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    assert caught.value.result.state is RestoreState.UNDONE and "unmount" in hv.calls
    assert _made(hv, zfs, parts) == before


def test_reconcile_undoes_a_zvol_restore_whose_process_died_before_registration(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs)
    before = _made(hv, zfs, parts)
    hv.fail["register"] = KeyboardInterrupt()   # the process stops here: nothing is taken away
    with pytest.raises(KeyboardInterrupt):
        restore(parts, RestoreRequest(ZVOL_SNAPSHOT, "db"))
    record = parts.journal.restores()[0]
    assert record.state is RestoreState.RESTORING and len(parts.luns.extents) == 2
    parts.journal.set_restore_state(record.restore_id, RestoreState.RESTORING, 11.0, owner_pid=DEAD_PID)
    assert reconcile_restores(parts) == [{"restore_id": record.restore_id,
                                          "result": "undone: interrupted before registration"}]
    assert _made(hv, zfs, parts) == before
    steps = parts.journal.restore(record.restore_id).steps
    assert {s.step: s.state for s in steps}[RestoreStep.SHARE] is ActionState.CLOSED


def test_the_preview_offers_the_hosts_that_see_the_lun(tmp_path, hv, zfs):
    parts = restore_parts(tmp_path, hv, zfs, zvol_vms=[vmfs_entry(), vmfs_entry(name="web", moref="vm-9")])
    shown = {vm["name"]: vm for vm in preview(parts, ZVOL_SNAPSHOT)["vms"]}
    assert hv.calls.count("hosts") == 1   # read once for the whole manifest, not per VM
    assert shown["db"]["transport"] == "vmfs" and shown["db"]["hosts"] == ["esx1"]
    assert shown["db"]["host"] == "esx1" and shown["db"]["problem"] is None
    # Refused on a host that does not see the LUN, with the hosts that do still offered.
    on_esx2 = preview(parts, ZVOL_SNAPSHOT, host="esx2")["vms"][0]
    assert on_esx2["hosts"] == ["esx1"] and "esx2 does not see LUN" in on_esx2["problem"]
    assert _made(hv, zfs, parts)[3] == ["1"]
