"""The restore methods in the real middlewared: the preview of a coordinated snapshot, a
restore job refused before anything is made (its error on the API's field, through the real
job framework), and an unknown restore as the real framework answers "not found"."""

from __future__ import annotations

from typing import Any

import pytest
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.truenas.iscsi import TrueNasLuns, device_missing

from .conftest import zfs


def test_restore_preview_then_a_refused_restore_job_makes_nothing(
    api: Any, info: dict[str, Any], mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    dataset = info["datastores"]["nfs01"]["dataset"]
    report = api.call("vmware_coord.run", dataset, False, "restore-source", job=True)
    snapshot = report["snapshot"]
    listed = api.call("vmware_coord.restore_snapshots", dataset)
    observe("vmware_coord.restore_snapshots result", listed)
    assert snapshot in [s["snapshot"] for s in listed]

    preview = api.call("vmware_coord.restore_preview", snapshot)
    observe("vmware_coord.restore_preview result", preview)
    assert sorted(vm["name"] for vm in preview["vms"]) == vms["nfs01"]
    # This NAS cannot share for the simulator's host (its name does not resolve here, or NFS is
    # not running): the preview says so for each VM, as the restore job refuses it below.
    for vm in preview["vms"]:
        assert vm["revert_to"] == f"truenas-vmware-coord:{report['run_id']}", vm
        assert "reverted to" in vm["point"] and vm["hosts"], vm
        assert "resolve the host name" in vm["problem"] or "NFS service" in vm["problem"], vm

    before = zfs("list", "-H", "-o", "name", "-t", "all")
    # What TrueNAS's sharing.nfs would refuse (the NFS service not running here, or a host name
    # the NAS cannot resolve) is refused before anything is made, on the request's host field.
    refused = api.error("vmware_coord.restore", {"snapshot": snapshot, "vm": "app-01"}, job=True)
    observe("vmware_coord.restore refused", refused)
    assert refused["type"] == "ValidationErrors", refused
    assert [e[0] for e in refused["errors"]] == ["vmware_coord_restore.host"], refused
    app = next(vm for vm in preview["vms"] if vm["name"] == "app-01")
    assert refused["errors"][0][1] in app["problem"], (refused, app)
    assert zfs("list", "-H", "-o", "name", "-t", "all") == before
    assert api.call("vmware_coord.restore_list") == []

    unknown = api.error("vmware_coord.restore", {"snapshot": snapshot, "vm": "nosuch"}, job=True)
    observe("vmware_coord.restore unknown vm", unknown)
    assert [e[0] for e in unknown["errors"]] == ["vmware_coord_restore.vm"], unknown


def test_an_unknown_restore_is_not_found(api: Any, observe: Any) -> None:
    missing = api.error("vmware_coord.restore_get", "nosuch")
    observe("vmware_coord.restore_get unknown", missing)
    assert missing["type"] == "ValidationErrors" and missing["errors"][0][0] is None, missing
    assert missing["errors"][0][2] == 2 and "nosuch" in missing["errors"][0][1], missing


def test_an_extent_for_a_zvol_whose_device_is_not_there_is_refused_as_the_lun_export_expects(
        api: Any, observe: Any) -> None:
    # What the VMFS restore's extent create meets when udev has not made the clone's device yet
    # (truenas/iscsi.py tries again only for this refusal): here no zvol exists at all.
    clone = "tank/lun-restore-0badc0de"
    refused = api.error("iscsi.extent.create",
                        {"name": "coord-probe", "type": "DISK", "disk": f"zvol/{clone}"})
    observe("iscsi.extent.create missing device", refused)
    assert refused["type"] == "ValidationErrors", refused
    [message] = [m for field, m, _errno in refused["errors"] if field == "iscsi_extent_create.disk"]
    assert device_missing(message, clone), refused
    assert not device_missing(message, "tank/other"), refused
    assert api.call("iscsi.extent.query", [["name", "=", "coord-probe"]]) == []
    # The adapter's queries (extents by type, mappings by "in") as the real framework filters them.
    luns = TrueNasLuns(api.call)
    assert luns.naa_of("tank/nosuch") == ()
    with pytest.raises(InvalidInput, match="no iSCSI target of this NAS maps an extent of tank/nosuch"):
        luns.check("snapshot", "tank/nosuch")
