"""A VM on a VMFS datastore (a zvol's iSCSI LUN) restored inside the middlewared double,
end to end: a coordinated snapshot of the zvol, the VM changed afterwards, the preview, the
``vmware_coord.restore`` job (the clone as a new extent of TrueNAS's ``iscsi.extent``, the
host's rescan, the VMFS copy resignatured and renamed, the VM registered and reverted), then
the cleanup job, after which no clone, extent, LUN, datastore or VM is left.

What stands for what: the simulator's iSCSI/VMFS double (tools/vcsim/coord_vmfs.go) for
ESXi's storage stack, the rig's iSCSI target (tools/rig/iscsi.py, fed by the double's
``iscsi`` service at each reload) for TrueNAS's SCST, and the zvol double (tools/rig/zvol.py)
for ZFS volumes, which zfs-fuse does not implement.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim
from truenas_vmware_coord.engine.ports import HypervisorFailure, Refused

from tests.integration.test_middleware_hooks import pin
from tests.integration.test_middleware_restore import invalid, job, ok
from tests.integration.test_restore import _add_nic, assert_at_the_snapshots_point
from tests.middleware_double import harness
from tests.middleware_double.middleware import Middleware
from tools.rig import inventory
from tools.rig.iscsi import IscsiTarget, create_vmfs_datastore, scsi_disk
from tools.rig.zvol import ZvolShell

_n = itertools.count()


def publish(target: IscsiTarget, zvols: ZvolShell) -> Callable[[list[dict[str, Any]]], None]:
    """What SCST does at a reload of TrueNAS's iSCSI service: serve exactly the mapped extents."""
    def reload(mapped: list[dict[str, Any]]) -> None:
        wanted = {e["naa"][2:]: zvols.device(e["path"][len("zvol/"):]) for e in mapped}
        served = target.luns()
        for naa in set(served) - set(wanted):
            target.remove_lun(naa)
        for naa, device in wanted.items():
            if naa not in served:
                target.add_lun(device, naa)
    return reload


class San:
    """A zvol exported by TrueNAS's iSCSI, a VMFS datastore on it with one VM, a mapping."""

    def __init__(self, mw: Middleware, sim, si: vim.ServiceInstance, pool, target: IscsiTarget,
                 zvols: ZvolShell) -> None:
        self.mw, self.si, self.target, self.zvols = mw, si, target, zvols
        tag = f"{os.getpid()}-{next(_n)}"
        self.zvol = f"{pool.name}/lun{tag}"
        zvols.create(self.zvol)
        extent = mw.call_sync("iscsi.extent.create", {"name": f"lun{tag}", "disk": f"zvol/{self.zvol}"})
        mw.call_sync("iscsi.targetextent.create", {"target": 1, "extent": extent["id"]})
        self.naa = extent["naa"][2:]
        content = si.RetrieveContent()
        self.host = content.rootFolder.childEntity[0].hostFolder.childEntity[0].host[0]
        self.host.configManager.storageSystem.RescanAllHba()
        self.datastore = f"vmfs{tag}"
        create_vmfs_datastore(self.host, self.naa, self.datastore)
        harness.add_mapping(mw, sim.host, sim.username, sim.password, self.datastore, self.zvol)
        self.vm = inventory.create_vm(si, f"{self.datastore}-db", self.datastore)
        _add_nic(self.vm)

    def everything(self) -> tuple:
        """What a restore could leave: zvols and snapshots, extents, LUNs, datastores, VMs."""
        return (sorted(self.zvols.volumes), sorted(e["path"] for e in self.mw.iscsi.extents),
                sorted(self.target.luns()), sorted(ds.name for ds in inventory.datastores(self.si)),
                sorted(vm.name for vm in inventory.vms(self.si)))


@pytest.fixture
def san(tmp_path: Path, vmfs_sim, vmfs_si, zfs_pool, target) -> Iterator[San]:
    mw, _plugin = harness.start(tmp_path / "mw")
    harness.wait_jobs(mw)
    zvols = ZvolShell(mw.zfs.shell, tmp_path / "zvols")
    mw.zfs.shell = zvols
    mw.services["vmware_coord"].runtime.shell = zvols
    mw.iscsi.devices = lambda: {n for n in zvols.volumes if "@" not in n}
    mw.iscsi.on_reload = publish(target, zvols)
    place = San(mw, vmfs_sim, vmfs_si, zfs_pool, target, zvols)
    pin(mw, vmfs_sim)
    yield place
    harness.stop(mw)


def test_a_vm_on_a_zvols_vmfs_datastore_comes_back_from_a_new_lun_and_cleanup_leaves_nothing(san):
    report = ok(san.mw.midclt("vmware_coord.run", json.dumps(san.zvol), "false", '"before"'))
    snap = report["snapshot"]
    assert snap == f"{san.zvol}@before" and report["vmsynced"] is True, report
    # Covered through its VMFS extent's NAA, the zvol's iSCSI extent's.
    assert [(v["name"], v["achieved"]) for v in report["vms"]] == [(san.vm.name, "quiesce")], report
    run_id = report["run_id"]
    # Changed after the snapshot: another VMware snapshot, a file in its directory on the LUN.
    inventory.wait(san.vm.CreateSnapshot_Task("after-the-snapshot", "", False, False))
    (san.zvols.device(san.zvol) / san.vm.name / "changed-later.txt").write_text("not in the snapshot\n")
    before = san.everything()

    listed = ok(san.mw.midclt("vmware_coord.restore_snapshots", json.dumps(san.zvol)))
    assert [(s["snapshot"], s["run_id"]) for s in listed] == [(snap, run_id)]
    [shown] = ok(san.mw.midclt("vmware_coord.restore_preview", json.dumps(snap)))["vms"]
    assert shown["problem"] is None and shown["transport"] == "vmfs"
    assert shown["hosts"] == [san.host.name] and shown["host"] == san.host.name
    assert san.everything() == before   # the preview made nothing

    done = job(san.mw, "vmware_coord.restore", {"snapshot": snap, "vm": san.vm.name,
                                                "new_name": f"{san.vm.name}-copy"})
    assert done.state == "SUCCESS", done.error
    result, plan = done.result, done.result["plan"]
    assert result["state"] == "restored" and plan["transport"] == "vmfs" and plan["source_lun"] == san.naa
    steps = " | ".join(d for _, d in done.progress_history if d)
    for word in ("cloning", "exposing", "rescanning", "registering", "reverting", "not to connect"):
        assert word in steps, steps
    # The clone is a new extent of TrueNAS's, in the original's target, at the next LUN id.
    [extent] = [e for e in san.mw.iscsi.extents if e["path"] == f"zvol/{plan['clone']}"]
    mapped = [(m["target"], m["lunid"]) for m in san.mw.iscsi.mappings if m["extent"] == extent["id"]]
    assert mapped == [(1, 1)]
    share = next(s for s in result["steps"] if s["step"] == "share")
    assert share["ref"] == f"{extent['id']} naa.{extent['naa'][2:]}"
    # ESXi's resignatured copy, renamed, on the clone's LUN alone.
    datastore = next(ds for ds in inventory.datastores(san.si) if ds.name == plan["datastore"])
    assert [e.diskName for e in datastore.info.vmfs.extent] == [f"naa.{extent['naa'][2:]}"]
    assert datastore.info.vmfs.uuid != next(ds for ds in inventory.datastores(san.si)
                                             if ds.name == san.datastore).info.vmfs.uuid
    copy = inventory.vm_named(san.si, f"{san.vm.name}-copy")
    assert_at_the_snapshots_point(copy, run_id, plan["datastore"])
    clone_dir = san.zvols.device(plan["clone"]) / san.vm.name
    assert (clone_dir / f"{san.vm.name}.vmx").exists() and not (clone_dir / "changed-later.txt").exists()
    assert inventory.snapshot_names(san.vm) == ["after-the-snapshot"]   # the original: untouched

    cleaned = job(san.mw, "vmware_coord.restore_cleanup", result["restore_id"])
    assert cleaned.state == "SUCCESS", cleaned.error
    assert cleaned.result["state"] == "cleaned"
    assert san.everything() == before
    # Unmounted, detached, then taken away on the NAS: the host's rescan dropped the LUN.
    assert scsi_disk(san.host, extent["naa"][2:]) is None and scsi_disk(san.host, san.naa) is not None


@pytest.mark.parametrize(("change", "field", "problem"), [
    ("iscsi stopped", "snapshot", "the iSCSI service is stopped"),
    ("unmapped", "snapshot", "no iSCSI target of this NAS maps an extent of"),
    ({"host": "nosuch"}, "host", "no host named 'nosuch'"),
])
def test_what_a_zvol_restore_cannot_do_is_refused_on_the_api_field_before_anything_is_made(
        san, change, field, problem):
    snap = ok(san.mw.midclt("vmware_coord.run", json.dumps(san.zvol), "false", '"ok"'))["snapshot"]
    request: dict[str, Any] = {"snapshot": snap, "vm": san.vm.name}
    if change == "iscsi stopped":
        san.mw.iscsi.state = "STOPPED"
    elif change == "unmapped":
        san.mw.iscsi.mappings.clear()
    else:
        request |= change
    before = san.everything()
    errors = invalid(san.mw.midclt("vmware_coord.restore", json.dumps(request)))
    assert list(errors) == [f"vmware_coord_restore.{field}"], errors
    assert problem in errors[f"vmware_coord_restore.{field}"], errors
    assert san.everything() == before
    assert ok(san.mw.midclt("vmware_coord.restore_list")) == []


def test_the_adapter_reads_luns_and_extents_and_says_what_vsphere_refuses(san):
    report = ok(san.mw.midclt("vmware_coord.run", json.dumps(san.zvol), "false", '"probe"'))
    hv = san.mw.services["vmware_coord"].restores.parts().open_endpoint(report["vms"][0]["endpoint_id"])
    try:
        host = san.host._moId
        assert san.naa in next(h for h in hv.hosts() if h.moref == host).luns
        assert hv.vmfs_extents(san.datastore) == (f"naa.{san.naa}",) and hv.vmfs_extents("nosuch") is None
        datastore = hv.find_datastore(san.datastore)
        assert datastore and hv.find_datastore_on(san.naa) == datastore
        # The original's LUN holds no copy: nothing to resignature, nothing made.
        with pytest.raises(Refused, match=f"sees no unresolved VMFS copy on LUN naa.{san.naa}"):
            hv.mount_vmfs_copy(host, san.naa, "never")
        # A VMFS volume a registered VM uses is not unmounted (ESXi: ResourceInUse).
        with pytest.raises(HypervisorFailure, match="ResourceInUse: .* has files on datastore"):
            hv.unmount(host, datastore)
        assert hv.find_datastore(san.datastore) == datastore and hv.find_datastore("never") is None
    finally:
        hv.close()
