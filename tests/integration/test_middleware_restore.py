"""``vmware_coord.restore*`` inside the middlewared double, against the simulator and zfs-fuse:
the preview, the restore job with its progress per step, the clone shared through TrueNAS's
``sharing.nfs`` (tests/middleware_double/sharing.py), list, cleanup (forced when the copy is
on), attach-disk, errors on the API's fields, "not found" as the framework answers it, and
an interrupted restore settled by ``vmware_coord.reconcile``."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from truenas_vmware_coord.app.restore_steps import journaled
from truenas_vmware_coord.domain.restore import RestorePlan, RestoreStep
from truenas_vmware_coord.truenas.sharing import COMMENT, TrueNasSharing
from truenas_vmware_coord.zfs import clone as zfs_clone

from tests.integration.test_middleware_hooks import Place, pin
from tests.middleware_double import harness
from tests.middleware_double.framework import Job
from tests.middleware_double.middleware import INVALID_PARAMS, Middleware
from tools.rig import inventory

_n = itertools.count()


@pytest.fixture
def place(tmp_path: Path, sim, module_si, zfs_pool) -> Iterator[Place]:
    mw, _plugin = harness.start(tmp_path / "mw")
    harness.wait_jobs(mw)
    p = Place(mw, sim, module_si, zfs_pool, f"r{next(_n)}")
    pin(mw, sim)
    for host in _hosts(module_si):
        mw.dns[host] = "127.0.0.1"   # the NAS resolves the ESXi hosts' names
    yield p
    harness.stop(mw)


def _hosts(si: vim.ServiceInstance) -> list[str]:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    try:
        return [h.name for h in view.view]
    finally:
        view.DestroyView()


def ok(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer
    return answer["result"]


def invalid(answer: dict[str, Any]) -> dict[str, str]:
    assert answer.get("error", {}).get("code") == INVALID_PARAMS, answer
    return {field: message for field, message, _errno in answer["error"]["data"]["extra"]}


def snapshot(place: Place, name: str) -> str:
    report = ok(place.mw.midclt("vmware_coord.run", json.dumps(place.dataset), "false", json.dumps(name)))
    return report["snapshot"]


def job(mw: Middleware, method: str, *args: Any) -> Job:
    started = mw.call_sync(method, *args)
    assert isinstance(started, Job)
    started.wait_sync(120)
    return started


def everything(place: Place) -> tuple:
    zfs = subprocess.run(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", place.dataset.split("/")[0]],
                         capture_output=True, text=True, check=True).stdout.split()
    return (sorted(zfs), sorted(vm.name for vm in inventory.vms(place.si)),
            sorted(ds.name for ds in inventory.datastores(place.si)), list(place.mw.sharing_nfs.rows))


def test_preview_then_restore_job_with_progress_per_step_shared_by_sharing_nfs_then_cleanup(place):
    name = place.vm("app-01").name
    snap = snapshot(place, "before")
    run_id = place.prop("before", "org.truenas.vmware-coord:run")
    listed = ok(place.mw.midclt("vmware_coord.restore_snapshots", json.dumps(place.dataset)))
    assert [s["snapshot"] for s in listed] == [snap] and listed[0]["run_id"] == run_id

    preview = ok(place.mw.midclt("vmware_coord.restore_preview", json.dumps(snap)))
    [vm] = preview["vms"]
    assert vm["name"] == name and vm["problem"] is None
    assert vm["revert_to"] == f"truenas-vmware-coord:{run_id}" and "reverted to" in vm["point"]
    assert vm["default_new_name"] == f"{name}-restored-<restore id>"
    assert vm["host"] in vm["hosts"] and vm["hosts"]
    before = everything(place)
    assert everything(place) == before   # the preview made nothing

    done = job(place.mw, "vmware_coord.restore", {"snapshot": snap, "vm": name, "new_name": f"{name}-copy"})
    assert done.state == "SUCCESS", done.error
    result = done.result
    assert result["state"] == "restored" and result["plan"]["new_name"] == f"{name}-copy"
    percents = [p for p, _ in done.progress_history if p is not None]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    steps = " | ".join(d for _, d in done.progress_history if d)
    for word in ("cloning", "sharing", "mounting", "registering", "reverting", "not to connect", "restored"):
        assert word in steps, steps
    # Shared through TrueNAS's own API: the clone's mountpoint, for that host, root not squashed.
    [share] = place.mw.sharing_nfs.rows
    clone = result["plan"]["clone"]
    assert share["path"] == zfs_clone.mountpoint(place.mw.services["vmware_coord"].runtime.shell, clone)
    assert share["hosts"] == [result["plan"]["host_name"]]
    assert (share["maproot_user"], share["maproot_group"]) == ("root", "root")
    assert share["comment"] == COMMENT.format(dataset=clone)
    share_step = next(s for s in result["steps"] if s["step"] == "share")
    assert share_step["ref"] == str(share["id"])

    rid = result["restore_id"]
    assert [r["restore_id"] for r in ok(place.mw.midclt("vmware_coord.restore_list"))] == [rid]
    assert ok(place.mw.midclt("vmware_coord.restore_get", json.dumps(rid)))["state"] == "restored"

    cleaned = job(place.mw, "vmware_coord.restore_cleanup", rid)
    assert cleaned.state == "SUCCESS", cleaned.error
    assert cleaned.result["state"] == "cleaned" and cleaned.progress["percent"] == 100
    assert place.mw.sharing_nfs.rows == []
    assert everything(place) == before


def test_a_copy_that_is_on_is_cleaned_up_only_with_force_and_attach_disk_names_its_fields(place):
    name = place.vm("app-02").name
    helper = place.vm("helper", power_on=False)
    snap = snapshot(place, "s1")
    done = job(place.mw, "vmware_coord.restore", {"snapshot": snap, "vm": name, "power_on": True,
                                                  "host": helper.runtime.host.name})
    assert done.state == "SUCCESS", done.error
    rid = done.result["restore_id"]
    assert invalid(place.mw.midclt("vmware_coord.restore_attach_disk", json.dumps(rid), "7",
                                   json.dumps(helper.name))).keys() == {"disk"}
    assert invalid(place.mw.midclt("vmware_coord.restore_attach_disk", json.dumps(rid), "0",
                                   json.dumps("nosuch"))).keys() == {"to"}
    attached = ok(place.mw.midclt("vmware_coord.restore_attach_disk", json.dumps(rid), "0",
                                  json.dumps(helper.name)))
    assert "read-only" in attached["notes"][0]
    refused = invalid(place.mw.midclt("vmware_coord.restore_cleanup", json.dumps(rid)))
    assert list(refused) == ["force"] and "poweredOn" in refused["force"]
    assert inventory.vm_named(place.si, done.result["plan"]["new_name"]).runtime.powerState == "poweredOn"
    cleaned = ok(place.mw.midclt("vmware_coord.restore_cleanup", json.dumps(rid), "true"))
    assert cleaned["state"] == "cleaned" and place.mw.sharing_nfs.rows == []


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"vm": "nosuch"}, "vmware_coord_restore.vm", "no VM named 'nosuch'"),
    ({"new_name": "{vm}"}, "vmware_coord_restore.new_name", "exists already"),
    ({"host": "nosuch"}, "vmware_coord_restore.host", "no host named 'nosuch'"),
    ({"snapshot": "{dataset}@bare"}, "vmware_coord_restore.snapshot", "has no manifest"),
    ({"snapshot": "{dataset}@nosuch"}, "vmware_coord_restore.snapshot", "does not exist"),
    ({"colour": "red"}, "vmware_coord_restore.colour", "Extra inputs are not permitted"),
    ({"power_on": "yes"}, "vmware_coord_restore.power_on", "valid boolean"),
    ("unresolvable", "vmware_coord_restore.host", "cannot resolve the host name"),
    ("nfs stopped", "vmware_coord_restore.host", "the NFS service is stopped"),
])
def test_bad_input_names_the_api_field_and_nothing_is_made(place, change, field, problem):
    name = place.vm("app-03").name
    snap = snapshot(place, "ok")
    subprocess.run(["zfs", "snapshot", f"{place.dataset}@bare"], check=True)   # not coordinated
    request: dict[str, Any] = {"snapshot": snap, "vm": name}
    if change == "unresolvable":
        place.mw.dns.clear()
    elif change == "nfs stopped":
        place.mw.sharing_nfs.nfs_state = "STOPPED"
    else:
        request |= {k: v.format(vm=name, dataset=place.dataset) if isinstance(v, str) else v
                    for k, v in change.items()}
    before = everything(place)
    errors = invalid(place.mw.midclt("vmware_coord.restore", json.dumps(request)))
    assert list(errors) == [field] and problem in errors[field], errors
    assert everything(place) == before
    assert ok(place.mw.midclt("vmware_coord.restore_list")) == []


def test_unknown_restores_are_not_found_and_previews_name_their_fields(place):
    place.vm("app-04")
    for method, args in (("vmware_coord.restore_get", ['"nosuch"']),
                         ("vmware_coord.restore_cleanup", ['"nosuch"']),
                         ("vmware_coord.restore_attach_disk", ['"nosuch"', "0", '"vm"'])):
        answer = place.mw.midclt(method, *args)
        # As the real framework answers InstanceNotFound: "Invalid params", no field, ENOENT.
        assert answer["error"]["code"] == INVALID_PARAMS, (method, answer)
        [[field, message, errno_]] = answer["error"]["data"]["extra"]
        assert (field, errno_) == (None, 2) and "nosuch" in message
    subprocess.run(["zfs", "snapshot", f"{place.dataset}@plain"], check=True)
    assert "has no manifest" in invalid(place.mw.midclt(
        "vmware_coord.restore_preview", json.dumps(f"{place.dataset}@plain")))["snapshot"]
    assert "not DATASET@SNAPSHOT" in invalid(place.mw.midclt(
        "vmware_coord.restore_preview", json.dumps(place.dataset)))["snapshot"]
    assert invalid(place.mw.midclt("vmware_coord.restore_snapshots", '"no/such"')).keys() == {"dataset"}
    snap = snapshot(place, "p")
    [vm] = ok(place.mw.midclt("vmware_coord.restore_preview", json.dumps(snap), '"nosuch"'))["vms"]
    assert vm["host"] is None and "no host named 'nosuch'" in vm["problem"]


def test_sharing_adapter_unshares_by_id_or_by_the_clone_when_the_answer_was_lost(place):
    sharing = TrueNasSharing(place.mw.call_sync)
    path = str(place.pool.dataset_mountpoint(place.dataset))
    first = sharing.share(place.dataset, path, ("10.0.0.1",))
    sharing.unshare(first)
    sharing.unshare(first)   # gone already: not an error
    sharing.share(place.dataset, path, ("10.0.0.2",))   # its id never journaled
    assert len(place.mw.sharing_nfs.rows) == 1
    sharing.unshare(place.dataset)
    assert place.mw.sharing_nfs.rows == []
    with pytest.raises(Exception, match="Unable to resolve host 'esx-unknown'"):
        sharing.share(place.dataset, path, ("esx-unknown",))


def test_reconcile_undoes_a_restore_whose_process_died_before_registration(place):
    name = place.vm("app-05").name
    snap = snapshot(place, "k")
    service = place.mw.services["vmware_coord"]
    parts = service.restores.parts()
    dead_pid = _dead_pid()
    preview = ok(place.mw.midclt("vmware_coord.restore_preview", json.dumps(snap)))["vms"][0]
    plan = RestorePlan(
        restore_id="deadbeef", run_id=place.prop("k", "org.truenas.vmware-coord:run"), snapshot=snap,
        endpoint_id=preview["endpoint_id"], vm_name=name, vm_moref="vm-0", new_name=f"{name}-x",
        host_moref="host-0", host_name=preview["host"], clone=f"{place.dataset}-restore-deadbeef",
        datastore="x-restore-deadbeef", nas_address="nas.test.local", vmx_path=f"{name}/{name}.vmx",
        revert_to=None, point="")
    parts.journal.start_restore(plan.to_dict(), parts.clock(), dead_pid)
    journaled(parts, plan.restore_id, RestoreStep.CLONE,
              lambda: zfs_clone.clone(parts.shell, snap, plan.clone), plan.clone)
    journaled(parts, plan.restore_id, RestoreStep.SHARE,
              lambda: parts.sharing.share(plan.clone, zfs_clone.mountpoint(parts.shell, plan.clone),
                                          (plan.host_name,)))
    assert len(place.mw.sharing_nfs.rows) == 1
    result = ok(place.mw.midclt("vmware_coord.reconcile"))
    assert result["restores"] == [{"restore_id": "deadbeef",
                                   "result": "undone: interrupted before registration"}]
    assert place.mw.sharing_nfs.rows == [] and not zfs_clone.exists(parts.shell, plan.clone)
    assert ok(place.mw.midclt("vmware_coord.restore_get", '"deadbeef"'))["state"] == "undone"


def _dead_pid() -> int:
    """A pid above the kernel's limit: never a live process (a reaped child's pid can be reused)."""
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    return limit + 12345
