"""Selection: which VMs a snapshot covers, once each, and what limits them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
import truenas_vmware_coord
from factories import (
    ESX_EP,
    NOW,
    VC_EP,
    VC_UUID,
    device,
    disk,
    inventory,
    mapping,
    nfs_datastore,
    snapshot,
    storage,
    vm,
    vmfs_datastore,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from truenas_vmware_coord.domain.model import BlockerKind, PowerState
from truenas_vmware_coord.domain.selection import (
    SNAPSHOT_NAME_PREFIX,
    Plan,
    Scope,
    SelectionSettings,
    VmStatus,
    build_plan,
    classify_vm,
    deduplicate,
    parse_datastore_path,
    scope_mappings,
)

SCHEMA = json.loads(
    (Path(truenas_vmware_coord.__file__).parent / "schemas" / "plan.json").read_text()
)
DATASETS = ("tank", "tank/vm", "tank/vm/child", "tank/vm2", "tank/other")


def plan(*inventories: Any, mappings: Any = (), dataset: str = "tank/vm", **kw: Any) -> Plan:
    kw.setdefault("storage", storage(DATASETS))
    return build_plan(dataset, inventories=inventories, mappings=mappings, now=NOW, **kw)


def names(p: Plan) -> list[str]:
    return [v.facts.name for v in p.vms]


def kinds(c: Any) -> list[BlockerKind]:
    return [b.kind for b in c.blockers]


# ------------------------------------------------------------------ scope


def test_scope_is_exact_recursive_and_honours_exclude_with_children() -> None:
    s = Scope("tank/vm", recursive=True, exclude=("tank/vm/scratch",))
    assert s.contains("tank/vm") and s.contains("tank/vm/child")
    assert not s.contains("tank/vm2")
    assert not s.contains("tank/vm/scratch") and not s.contains("tank/vm/scratch/x")
    assert not Scope("tank/vm").contains("tank/vm/child")
    assert not Scope("tank/vm", exclude=("tank",)).contains("tank/vm")


def test_scope_mappings_selects_in_scope_datasets() -> None:
    ms = [mapping("tank/vm", id="1"), mapping("tank/vm2", id="2"),
          mapping("tank/vm/child", id="3")]
    assert [m.id for m in scope_mappings(ms, Scope("tank/vm", True))] == ["1", "3"]


# ------------------------------------------------------------------ datastores


def test_ds1_never_matches_ds10() -> None:
    # Neither datastore is provably on the NAS: only the mapping's exact name counts.
    ds1 = nfs_datastore("ds1", hosts=("10.9.9.9",))
    ds10 = nfs_datastore("ds10", hosts=("10.9.9.9",))
    inv = inventory(vm("a", ds="ds1"), vm("b", ds="ds10"), datastores=[ds1, ds10])
    p = plan(inv, mappings=[mapping("tank/vm", "ds1")])
    assert names(p) == ["a"]
    assert [d.name for d in p.datastores] == ["ds1"]
    assert p.datastores[0].via == "mapping"
    assert any("not proved to be on this NAS" in w for w in p.warnings)


def test_unresolvable_mapping_is_a_warning_with_a_hint() -> None:
    inv = inventory(vm("a", ds="DS1"), datastores=[nfs_datastore("DS1", hosts=("10.9.9.9",))])
    p = plan(inv, mappings=[mapping("tank/vm", "ds1", id="7")])
    assert p.vms == ()
    assert any("mapping 7: no datastore named 'ds1'" in w and "did you mean 'DS1'" in w
               for w in p.warnings)


def test_mapping_without_inventory_is_a_warning() -> None:
    p = plan(mappings=[mapping("tank/vm", "ds1", endpoint="x@y:443", id="3")])
    assert p.warnings == ("mapping 3: no inventory from endpoint x@y:443; VMs on 'ds1' are "
                          "not in this plan",)


def test_datastore_proved_by_export_is_covered_without_a_mapping() -> None:
    inv = inventory(vm("a", ds="other-name"), datastores=[nfs_datastore("other-name")])
    p = plan(inv, mappings=[mapping("tank/vm", "ds1")])
    assert names(p) == ["a"]
    assert (p.datastores[0].via, p.datastores[0].datasets) == ("nfs", ("tank/vm",))


def test_mapping_contradicted_by_export_is_ignored_with_a_warning() -> None:
    inv = inventory(vm("a"), datastores=[nfs_datastore("ds1", path="/mnt/tank/vm2")])
    p = plan(inv, mappings=[mapping("tank/vm", "ds1", id="4")])
    assert p.vms == ()
    assert any(w.startswith("mapping 4 names datastore 'ds1'") and "ignored" in w
               for w in p.warnings)
    assert names(plan(inv, mappings=[mapping("tank/vm", "ds1")], dataset="tank/vm2")) == ["a"]


def test_vmfs_datastore_on_a_zvol_is_covered_by_its_plan() -> None:
    st_facts = storage(DATASETS, extents={"tank/zvol1": ["0x6589cfc000000aa"]})
    inv = inventory(vm("a", ds="lun1"), datastores=[vmfs_datastore("lun1")])
    p = plan(inv, dataset="tank/zvol1", storage=st_facts)
    assert names(p) == ["a"] and p.datastores[0].via == "vmfs"


def test_vmfs_spanning_a_zvol_outside_the_snapshot_warns() -> None:
    st_facts = storage(DATASETS, extents={"tank/z1": ["naa.aa"], "tank/z2": ["naa.bb"]})
    inv = inventory(vm("a", ds="lun"),
                    datastores=[vmfs_datastore("lun", extents=("naa.aa", "naa.bb"))])
    p = plan(inv, dataset="tank/z1", storage=st_facts)
    assert names(p) == ["a"]
    assert p.vms[0].other_datasets == ("tank/z2",)
    assert any("spans tank/z2" in w for w in p.warnings)


def test_inaccessible_datastore_warns() -> None:
    p = plan(inventory(datastores=[nfs_datastore(accessible=False)]))
    assert any("inaccessible" in w for w in p.warnings)


# ------------------------------------------------------------------ dependency


def test_vm_depends_through_a_disk_even_with_its_vmx_elsewhere() -> None:
    ds1, local = nfs_datastore("ds1"), nfs_datastore("local", hosts=("10.9.9.9",))
    v = vm("a", ds="local", disks=(disk("[ds1] a/a_1.vmdk", datastore=ds1.moref),))
    p = plan(inventory(v, datastores=[ds1, local]))
    assert names(p) == ["a"]
    assert [(f.path, f.source) for f in p.vms[0].files] == [("[ds1] a/a_1.vmdk", "disk")]


@pytest.mark.parametrize("field", ["vmx_path", "files"])
def test_vm_depends_through_vmx_or_layout_files_alone(field: str) -> None:
    value: Any = "[ds1] a/a.vmx" if field == "vmx_path" else ("[ds1] a/a.nvram",)
    v = vm("a", ds=None, **{field: value})
    assert names(plan(inventory(v, datastores=[nfs_datastore("ds1")]))) == ["a"]


def test_vm_without_any_file_list_falls_back_to_its_datastores() -> None:
    ds1 = nfs_datastore("ds1")
    p = plan(inventory(vm("a", ds=None, datastores=(ds1.moref,)), datastores=[ds1]))
    assert [f.source for f in p.vms[0].files] == ["datastore"]


def test_vm_elsewhere_is_not_planned() -> None:
    inv = inventory(vm("a", ds="local"),
                    datastores=[nfs_datastore("ds1"), nfs_datastore("local", path="/srv")])
    assert plan(inv).vms == ()


def test_same_name_in_two_datacenters_is_narrowed_by_the_vms_datastores() -> None:
    here = nfs_datastore("ds1", "datastore-1")
    there = nfs_datastore("ds1", "datastore-2", path="/mnt/tank/vm2")
    v = vm("a", ds=None, vmx_path="[ds1] a/a.vmx", datastores=("datastore-2",))
    assert plan(inventory(v, datastores=[here, there])).vms == ()
    assert names(plan(inventory(v, datastores=[here, there]), dataset="tank/vm2")) == ["a"]


def test_files_in_a_child_dataset_under_a_parent_export_belong_to_the_child() -> None:
    inv = inventory(vm("child", ds="ds1"), vm("plain", ds="ds1"),
                    datastores=[nfs_datastore("ds1", path="/mnt/tank/vm")])
    assert names(plan(inv)) == ["plain"]
    assert names(plan(inv, dataset="tank/vm/child")) == ["child"]
    assert names(plan(inv, recursive=True)) == ["child", "plain"]
    assert names(plan(inv, recursive=True, exclude=["tank/vm/child"])) == ["plain"]


def test_recursive_plan_includes_child_exports_and_exclude_removes_them() -> None:
    inv = inventory(vm("a", ds="ds-child"), vm("b", ds="ds1"),
                    datastores=[nfs_datastore("ds1"),
                                nfs_datastore("ds-child", path="/mnt/tank/vm/child")])
    assert names(plan(inv)) == ["b"]
    assert names(plan(inv, dataset="tank", recursive=True)) == ["a", "b"]
    assert names(plan(inv, dataset="tank", recursive=True, exclude=["tank/vm/child"])) == ["b"]
    assert names(plan(inv, dataset="tank", recursive=True, exclude=["tank/vm"])) == []


def test_vm_spanning_a_dataset_outside_the_snapshot_is_noted() -> None:
    v = vm("a", disks=(disk("[ds1] a/a.vmdk"), disk("[ds2] a/a_1.vmdk", key=2001)))
    inv = inventory(v, datastores=[nfs_datastore("ds1"),
                                   nfs_datastore("ds2", path="/mnt/tank/other")])
    vp = plan(inv).vms[0]
    assert vp.datasets == ("tank/vm",) and vp.other_datasets == ("tank/other",)
    assert any("tank/other, which this snapshot does not include" in n for n in vp.notes)


def test_parse_datastore_path() -> None:
    assert parse_datastore_path("[my ds] a b/c.vmx") == ("my ds", "a b/c.vmx")
    assert parse_datastore_path("/vmfs/volumes/x/y") is None


# ------------------------------------------------------------------ de-duplication


def test_vm_reached_through_esxi_and_its_vcenter_is_planned_once_through_vcenter() -> None:
    ds_vc, ds_esx = nfs_datastore("ds1"), nfs_datastore("ds1", endpoint=ESX_EP)
    p = plan(inventory(vm("a", endpoint=ESX_EP, vcenter=None, moref="12"), datastores=[ds_esx],
                       endpoint=ESX_EP, vcenter=None),
             inventory(vm("a"), datastores=[ds_vc]))
    assert len(p.vms) == 1
    assert (p.vms[0].facts.endpoint_id, p.vms[0].also_seen_as) == (VC_EP, ((ESX_EP, "12"),))
    assert p.vms[0].key == f"uuid:{VC_UUID}:5000-a"


def test_vm_reached_through_several_datastores_and_mappings_is_planned_once() -> None:
    v = vm("a", disks=(disk("[ds1] a/a.vmdk"), disk("[ds2] a/a_1.vmdk", key=2001)))
    inv = inventory(v, datastores=[nfs_datastore("ds1"),
                                   nfs_datastore("ds2", path="/mnt/tank/vm/x")])
    p = plan(inv, mappings=[mapping("tank/vm", "ds1", id="m1"), mapping("tank/vm", "ds2", id="m2")])
    assert names(p) == ["a"]
    assert p.vms[0].mapping_ids == ("m1", "m2")


def test_shared_bios_uuid_does_not_merge_clones() -> None:
    groups, _ = deduplicate([vm("a", uuid="u1"), vm("b", uuid="u2", bios_uuid="4200-a")])
    assert len(groups) == 2


def test_same_instance_uuid_in_two_vcenters_stays_two_vms() -> None:
    groups, warnings = deduplicate([vm("a", uuid="u"), vm("b", uuid="u", vcenter="vc-2",
                                                         endpoint="x@vc2:443")])
    assert [g.key for g in groups] == ["uuid:vc-0001:u", "uuid:vc-2:u"]
    assert warnings == ()


def test_esxi_report_that_two_vcenters_could_own_is_kept_apart_with_a_warning() -> None:
    groups, warnings = deduplicate([
        vm("a", uuid="u"), vm("a", uuid="u", vcenter="vc-2", endpoint="x@vc2:443"),
        vm("a", uuid="u", vcenter=None, endpoint=ESX_EP, moref="7"),
    ])
    assert len(groups) == 3
    assert any("planned separately" in w for w in warnings)


def test_two_vms_of_one_endpoint_sharing_an_instance_uuid_are_not_merged() -> None:
    groups, warnings = deduplicate([vm("a", uuid="u", endpoint=ESX_EP, vcenter=None),
                                    vm("b", uuid="u", endpoint=ESX_EP, vcenter=None)])
    assert sorted(g.primary.name for g in groups) == ["a", "b"] and warnings


def test_vm_without_instance_uuid_is_identified_by_endpoint_and_moref() -> None:
    groups, _ = deduplicate([vm("a", uuid=""), vm("a", uuid="", endpoint=ESX_EP)])
    assert sorted(g.key for g in groups) == sorted([f"moref:{ESX_EP}/vm-a",
                                                    f"moref:{VC_EP}/vm-a"])


# identity model for the properties: (instance uuid, vCenter or None, endpoint, moref)
report = st.tuples(st.sampled_from(["u1", "u2", "U1", "u3", ""]),
                   st.sampled_from([VC_UUID, "vc-2", None]),
                   st.sampled_from([VC_EP, ESX_EP, "root@esx2:443"]),
                   st.sampled_from(["vm-1", "vm-2", "vm-3"]))
# Conflicting reports of one (endpoint, moref) are allowed here: the result must still not
# depend on their order.
reports = st.lists(report, max_size=12)
distinct_reports = st.lists(report, max_size=12, unique_by=lambda r: (r[2], r[3]))


def _vms(rows: list[tuple[str, str | None, str, str]]) -> list[Any]:
    return [vm(f"n-{m}", uuid=u, vcenter=c, endpoint=e, moref=m) for u, c, e, m in rows]


def _shape(groups: Any) -> list[tuple[str, tuple[str, str], list[tuple[str, str]]]]:
    return [(g.key, (g.primary.endpoint_id, g.primary.moref),
             [(o.endpoint_id, o.moref) for o in g.others]) for g in groups]


@given(reports, st.randoms())
def test_dedup_is_order_independent(rows: Any, rnd: Any) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert deduplicate(_vms(rows)) == deduplicate(_vms(shuffled))


@given(reports)
def test_dedup_is_idempotent(rows: Any) -> None:
    groups, _ = deduplicate(_vms(rows))
    again, _ = deduplicate([g.primary for g in groups])
    assert [(g.key, g.primary) for g in again] == [(g.key, g.primary) for g in groups]
    assert all(not g.others for g in again)


@given(distinct_reports)
def test_dedup_is_exact(rows: Any) -> None:
    vms = _vms(rows)
    groups, _ = deduplicate(vms)
    # Every distinct report lands in exactly one group...
    seen = [r for g in groups for r in (g.primary, *g.others)]
    assert sorted((v.endpoint_id, v.moref) for v in seen) == sorted(
        {(v.endpoint_id, v.moref) for v in vms})
    for g in groups:
        members = (g.primary, *g.others)
        # ...only reports with the same instance UUID share a group, never two of one
        # endpoint, never two different vCenters, and a vCenter is preferred to act through.
        assert len({m.instance_uuid.lower() for m in members if m.instance_uuid}) <= 1
        assert len({m.endpoint_id for m in members}) == len(members)
        assert len({m.vcenter_uuid for m in members if m.vcenter_uuid}) <= 1
        assert g.primary.vcenter_uuid or not any(m.vcenter_uuid for m in members)
        if len(members) > 1:
            assert all(m.instance_uuid for m in members)
    # ...and reports that agree on (vCenter, UUID) are merged into one group, a host's report
    # joining the only vCenter with that UUID; a bucket with two VMs of one endpoint is
    # ambiguous and split completely.
    member_sets = [{(m.endpoint_id, m.moref) for m in (g.primary, *g.others)} for g in groups]
    for v in vms:
        if not (v.instance_uuid and v.vcenter_uuid):
            continue
        twins = [w for w in vms if (w.instance_uuid or "").lower() == v.instance_uuid.lower()]
        vcs = {w.vcenter_uuid for w in twins if w.vcenter_uuid}
        bucket = {(w.endpoint_id, w.moref) for w in twins if w.vcenter_uuid == v.vcenter_uuid
                  or (not w.vcenter_uuid and len(vcs) == 1)}
        if len({e for e, _ in bucket}) == len(bucket):
            assert bucket in member_sets
        else:
            assert all({r} in member_sets for r in bucket)


def test_same_inventory_twice_changes_nothing() -> None:
    inv = inventory(vm("a"), vm("b", power=PowerState.OFF), datastores=[nfs_datastore()])
    assert plan(inv, inv).to_dict() == plan(inv).to_dict()


def test_identity_warnings_concern_only_vms_in_the_plan() -> None:
    far = nfs_datastore("far", path="/mnt/tank/vm2")
    vc2 = "x@vc2:443"
    invs = [inventory(vm("a", uuid="u", ds="far"), datastores=[far]),
            inventory(vm("a", uuid="u", ds="far", endpoint=vc2, vcenter="vc-2"),
                      datastores=[nfs_datastore("far", endpoint=vc2, path="/mnt/tank/vm2")],
                      endpoint=vc2, vcenter="vc-2"),
            inventory(vm("a", uuid="u", ds="far", endpoint=ESX_EP, vcenter=None),
                      datastores=[nfs_datastore("far", endpoint=ESX_EP, path="/mnt/tank/vm2")],
                      endpoint=ESX_EP, vcenter=None)]
    assert plan(*invs).warnings == ()
    in_plan = plan(*invs, dataset="tank/vm2")
    assert len(in_plan.vms) == 3 and any("planned separately" in w for w in in_plan.warnings)


def test_mapping_naming_the_parent_of_a_child_export() -> None:
    inv = inventory(vm("a"), datastores=[nfs_datastore("ds1", path="/mnt/tank/vm/child")])
    maps = [mapping("tank/vm", "ds1", id="5")]
    flat = plan(inv, mappings=maps)
    assert flat.vms == () and any("mapping 5" in w and "ignored" in w for w in flat.warnings)
    deep = plan(inv, mappings=maps, recursive=True)
    assert names(deep) == ["a"] and deep.warnings == ()


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"power": PowerState.OFF}, "powered off: its disks are already consistent"),
    ({"power": PowerState.SUSPENDED}, "suspended: its memory and disks are already saved"),
    ({"power": PowerState.OFF, "template": True}, "template: it never runs"),
])
def test_vms_that_need_nothing_say_why(overrides: dict[str, Any], reason: str) -> None:
    c = classify_vm(vm(devices=(device("passthrough", "PCI device 0"),), **overrides), now=NOW)
    assert c.status is VmStatus.NOTHING_TO_DO
    assert c.reason.startswith(reason)
    assert c.blockers == ()


def test_healthy_running_vm_has_no_blockers() -> None:
    c = classify_vm(vm(), now=NOW)
    assert (c.status, c.blockers, c.notes) == (VmStatus.NEEDS_ACTION, (), ())


@pytest.mark.parametrize(("facts", "kind", "detail"), [
    ({"devices": (device("passthrough", "PCI device 0"),)}, BlockerKind.PASSTHROUGH,
     "PCI passthrough device 'PCI device 0'"),
    ({"devices": (device("passthrough", "PCI device 1", "dynamic DirectPath"),)},
     BlockerKind.PASSTHROUGH, "PCI passthrough device 'PCI device 1' (dynamic DirectPath)"),
    ({"devices": (device("vgpu", "PCI device 2", "grid_a100-4c"),)}, BlockerKind.VGPU,
     "vGPU device 'PCI device 2' (grid_a100-4c)"),
    ({"devices": (device("sriov", "Network adapter 2"),)}, BlockerKind.SRIOV,
     "SR-IOV network adapter 'Network adapter 2'"),
    ({"devices": (device("nvdimm", "NVDIMM 0"),)}, BlockerKind.NVDIMM, "NVDIMM 'NVDIMM 0'"),
    ({"devices": (device("scsi_controller", "SCSI controller 1", "physicalSharing"),)},
     BlockerKind.BUS_SHARING, "SCSI controller 'SCSI controller 1' shares its bus "
                              "(physicalSharing)"),
    ({"fault_tolerance_state": "running"}, BlockerKind.FAULT_TOLERANCE,
     "Fault Tolerance is configured (state running)"),
    ({"disks": (disk("[ds1] a/rdm.vmdk", label="Hard disk 3", rdm_mode="physicalMode",
                     disk_mode="independent_persistent"),)},
     BlockerKind.PHYSICAL_RDM, "'Hard disk 3' is a physical-mode RDM ([ds1] a/rdm.vmdk)"),
    ({"disks": (disk("[ds1] a/log.vmdk", label="Hard disk 2",
                     disk_mode="independent_persistent"),)},
     BlockerKind.INDEPENDENT_DISK, "'Hard disk 2' ([ds1] a/log.vmdk) is independent_persistent:"
                                   " a VMware snapshot will not protect it"),
    ({"disks": (disk("[ds1] a/q.vmdk", label="Hard disk 4", sharing="sharingMultiWriter"),)},
     BlockerKind.MULTI_WRITER, "'Hard disk 4' ([ds1] a/q.vmdk) is shared multi-writer"),
    ({"tools_running": False}, BlockerKind.NO_TOOLS,
     "VMware Tools are not running: a quiesce request would be silently ignored"),
    ({"snapshot_supported": False}, BlockerKind.NO_SNAPSHOT_CAPABILITY,
     "vSphere reports capability.snapshotOperationsSupported = false"),
    ({"quiesce_supported": False}, BlockerKind.NO_QUIESCE_CAPABILITY,
     "vSphere reports capability.quiescedSnapshotsSupported = false"),
    ({"memory_supported": False}, BlockerKind.NO_MEMORY_CAPABILITY,
     "vSphere reports capability.memorySnapshotsSupported = false"),
    ({"consolidation_needed": True}, BlockerKind.CONSOLIDATION_NEEDED,
     "the disks need consolidation: an earlier snapshot removal failed"),
])
def test_each_blocker_names_what_blocks(facts: dict[str, Any], kind: BlockerKind,
                                        detail: str) -> None:
    c = classify_vm(vm("a", **facts), now=NOW)
    assert [(b.kind, b.detail) for b in c.blockers] == [(kind, detail)]
    assert c.status is VmStatus.NEEDS_ACTION and kind.value in c.reason


def test_unreported_capabilities_and_unshared_controllers_block_nothing() -> None:
    v = vm(snapshot_supported=None, quiesce_supported=None, memory_supported=None,
           devices=(device("scsi_controller", "SCSI controller 0", "noSharing"),
                    device("usb", "USB controller")))
    assert classify_vm(v, now=NOW).blockers == ()


def test_every_independent_disk_is_named() -> None:
    v = vm(disks=(disk("[ds1] a/a.vmdk"),
                  disk("[ds1] a/b.vmdk", label="Hard disk 2", disk_mode="independent_persistent"),
                  disk("[ds1] a/c.vmdk", label="Hard disk 3",
                       disk_mode="independent_nonpersistent")))
    details = [b.detail for b in classify_vm(v, now=NOW).blockers]
    assert [d.split("'")[1] for d in details] == ["Hard disk 2", "Hard disk 3"]


def test_deep_and_old_snapshot_chains_block() -> None:
    chain = (snapshot("s1", depth=1, age_hours=100), snapshot("s2", depth=2),
             snapshot("s3", depth=3))
    c = classify_vm(vm(snapshots=chain), now=NOW)
    assert kinds(c) == [BlockerKind.DEEP_SNAPSHOT_CHAIN] * 2
    assert c.blockers[0].detail == "3 snapshot level(s) already (3 snapshot(s)); limit 3"
    assert c.blockers[1].detail == "oldest snapshot 's1' is 4 days old (limit 3 days)"
    relaxed = SelectionSettings(max_chain_depth=4, max_snapshot_age=200 * 3600)
    assert classify_vm(vm(snapshots=chain), now=NOW, settings=relaxed).blockers == ()


def test_leftover_snapshots_of_this_product_are_noted() -> None:
    left = snapshot(f"{SNAPSHOT_NAME_PREFIX}run-1", age_hours=5, moref="snapshot-9")
    c = classify_vm(vm(power=PowerState.OFF, snapshots=(left, snapshot("mine"))), now=NOW)
    assert c.leftovers == (left,)
    assert c.notes == (f"leftover snapshot '{SNAPSHOT_NAME_PREFIX}run-1' (snapshot-9) from an "
                       "earlier run, 5 hours old: reconcile removes it",)


# ------------------------------------------------------------------ plan shape


def _walk_fields(node: Any, path: str = "$") -> list[str]:
    """Paths of schema properties that lack a title or a description."""
    missing = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if not ("title" in sub and "description" in sub):
                missing.append(f"{path}.{name}")
        for key, sub in node.items():
            missing += _walk_fields(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            missing += _walk_fields(sub, f"{path}[{i}]")
    return missing


def test_schema_is_valid_and_every_field_is_described() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert _walk_fields(SCHEMA) == []


def _rich_plan() -> Plan:
    busy = vm("busy", host="host-1", devices=(device("passthrough", "PCI device 0"),), tools_running=False,
              snapshots=(snapshot(f"{SNAPSHOT_NAME_PREFIX}x"),),
              custom_attributes=(("backup", "gold"),))
    inv_vc = inventory(busy, vm("off", power=PowerState.OFF), datastores=[nfs_datastore()])
    inv_esx = inventory(vm("busy", endpoint=ESX_EP, vcenter=None, moref="3"),
                        datastores=[nfs_datastore(endpoint=ESX_EP)], endpoint=ESX_EP,
                        vcenter=None)
    return plan(inv_vc, inv_esx, mappings=[mapping("tank/vm", "nope", id="1")], recursive=True,
                exclude=["tank/vm/child"])


def test_plan_serializes_to_json_that_validates_against_the_schema() -> None:
    p = _rich_plan()
    d = p.to_dict()
    Draft202012Validator(SCHEMA).validate(d)
    json.dumps(d)
    assert d["summary"] == {"vms": 2, "needs_action": 1, "nothing_to_do": 1, "with_blockers": 1,
                            "datastores": 2, "warnings": 1}
    busy = d["vms"][0]
    assert busy["facts"]["name"] == "busy" and busy["policy"] is None
    assert busy["also_seen_as"] == [{"endpoint_id": ESX_EP, "moref": "3"}]
    assert busy["host_name"] == "esx1.example.com" and busy["leftover_snapshots"]


@dataclasses.dataclass(frozen=True)
class _Decision:
    """Stands in for policy.Resolution (another module): only its to_dict shape matters."""

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "gpu-hosts", "policy_id": 3, "ladder": ["crash"],
                "pruned": [{"rung": "quiesce", "reason": "passthrough: PCI device 0"}],
                "summary": "crash-consistent: PCI passthrough device 'PCI device 0'"}


def test_plan_with_a_policy_decision_validates() -> None:
    p = _rich_plan()
    filled = dataclasses.replace(p, vms=tuple(dataclasses.replace(v, policy=_Decision())
                                              for v in p.vms))
    d = filled.to_dict()
    Draft202012Validator(SCHEMA).validate(d)
    assert d["vms"][0]["policy"]["ladder"] == ["crash"]
    bad = {**d["vms"][0]["policy"], "ladder": ["teleport"]}
    assert not Draft202012Validator(SCHEMA).is_valid({**d, "vms": [{**d["vms"][0], "policy": bad}]})


world = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]),                 # VM name (uuid follows)
              st.sampled_from([VC_EP, ESX_EP]),
              st.sampled_from(["ds1", "ds10", "child", "far"]),
              st.sampled_from(list(PowerState))),
    max_size=10,
)


def _world(rows: Any) -> tuple[list[Any], list[Any]]:
    def datastores(ep: str) -> list[Any]:
        return [nfs_datastore("ds1", endpoint=ep),
                nfs_datastore("ds10", endpoint=ep, hosts=("10.9.9.9",)),
                nfs_datastore("child", endpoint=ep, path="/mnt/tank/vm/child"),
                nfs_datastore("far", endpoint=ep, path="/mnt/tank/vm2")]
    by_ep: dict[str, dict[str, Any]] = {VC_EP: {}, ESX_EP: {}}
    for name, ep, ds, power in rows:
        vc = VC_UUID if ep == VC_EP else None
        by_ep[ep][name] = vm(name, ds=ds, endpoint=ep, vcenter=vc, power=power)
    invs = [inventory(*by_ep[ep].values(), datastores=datastores(ep), endpoint=ep,
                      vcenter=VC_UUID if ep == VC_EP else None) for ep in by_ep]
    maps = [mapping("tank/vm", "ds10", id="1"), mapping("tank/vm", "ds1", id="2"),
            mapping("tank/vm", "ds1", endpoint=ESX_EP, id="3")]
    return invs, maps


@settings(max_examples=60)
@given(world, st.booleans(), st.randoms())
def test_plan_is_order_independent_exact_and_valid(rows: Any, recursive: bool,
                                                   rnd: Any) -> None:
    invs, maps = _world(rows)
    p = plan(*invs, mappings=maps, recursive=recursive)
    shuffled = [dataclasses.replace(i, vms=tuple(rnd.sample(i.vms, len(i.vms))),
                                    datastores=tuple(rnd.sample(i.datastores,
                                                                len(i.datastores))))
                for i in rnd.sample(invs, len(invs))]
    assert plan(*shuffled, mappings=rnd.sample(maps, len(maps)),
                recursive=recursive).to_dict() == p.to_dict()
    Draft202012Validator(SCHEMA).validate(p.to_dict())
    # Exactly the VMs on ds1, on 'ds10' only where a mapping names it (the vCenter), on
    # child only when recursive, never on far; once each however often reported.
    def wanted(ep: str) -> set[str]:
        return {"ds1"} | ({"ds10"} if ep == VC_EP else set()) | (
            {"child"} if recursive else set())
    last = {(n, ep): ds for n, ep, ds, _ in rows}
    expected = {n for (n, ep), ds in last.items() if ds in wanted(ep)}
    assert sorted(names(p)) == sorted(expected)
    assert len(set(names(p))) == len(p.vms)


def test_ten_thousand_vms_plan_in_linear_time() -> None:
    dss = [nfs_datastore(f"ds{i}", path=f"/mnt/tank/vm/d{i}") for i in range(50)]
    vms = [vm(f"vm{i}", ds=f"ds{i % 50}") for i in range(10_000)]
    esx = [vm(f"vm{i}", ds=f"ds{i % 50}", endpoint=ESX_EP, vcenter=None, moref=str(i))
           for i in range(0, 10_000, 2)]
    esx_dss = [dataclasses.replace(d, endpoint_id=ESX_EP) for d in dss]
    started = time.perf_counter()
    p = plan(inventory(*vms, datastores=dss),
             inventory(*esx, datastores=esx_dss, endpoint=ESX_EP, vcenter=None))
    elapsed = time.perf_counter() - started
    assert len(p.vms) == 10_000
    assert elapsed < 10, elapsed   # ~1 s here; a quadratic step would take minutes
