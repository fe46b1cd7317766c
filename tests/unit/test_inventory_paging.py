"""The vSphere adapter's pure parts, fed with real pyVmomi data objects.

- ``inventory.retrieve_all`` paging: the govmomi simulator ignores
  ``RetrieveOptions.maxObjects`` (one page, never a token; see docs test-rig.md), so paging
  cannot be exercised against it. ``PagingCollector`` below is a stand-in for the
  PropertyCollector: it answers with real ``RetrieveResult`` / ``ObjectContent`` /
  ``DynamicProperty`` objects and records which methods were called with what.
- ``vm_facts`` / ``datastore_facts``: property values built as the SOAP deserializer builds
  them (pyVmomi type-checks every field, so a wrong type fails here as it would on the wire).
- ``tls.normalize_fingerprint``, ``session.choose_version`` and
  ``session._parse_service_versions``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from pyVmomi import vim, vmodl
from truenas_vmware_coord.domain.model import DeviceFacts, PowerState
from truenas_vmware_coord.vsphere import inventory, session, tls
from truenas_vmware_coord.vsphere.errors import ApiTooOld

PC = vmodl.query.PropertyCollector
DEV = vim.vm.device


# --------------------------------------------------------------------------- paging


def _vm_content(moref: str) -> PC.ObjectContent:
    return PC.ObjectContent(obj=vim.VirtualMachine(moref, stub=None),
                            propSet=[vmodl.DynamicProperty(name="name", val=f"name-{moref}")])


def _pages(*sizes: int) -> list[PC.RetrieveResult]:
    """Pages of VM contents, each but the last carrying a continuation token."""
    pages, n = [], 0
    for i, size in enumerate(sizes):
        objects = [_vm_content(f"vm-{n + k}") for k in range(size)]
        n += size
        token = f"token-{i + 1}" if i + 1 < len(sizes) else None
        pages.append(PC.RetrieveResult(token=token, objects=objects))
    return pages


class PagingCollector:
    """Stand-in for a vCenter PropertyCollector that pages (the simulator never does)."""

    def __init__(self, pages: Sequence[PC.RetrieveResult]) -> None:
        # vSphere answers a retrieval that finds nothing with no result at all (None).
        self._pages: dict[str | None, PC.RetrieveResult | None] = {None: pages[0] if pages else None}
        self._pages.update({p.token: nxt for p, nxt in zip(pages, pages[1:], strict=False)})
        self.calls: list[tuple[str, Any]] = []

    def RetrievePropertiesEx(self, specSet: list[PC.FilterSpec],  # noqa: N802, N803 - vSphere's names
                             options: PC.RetrieveOptions) -> PC.RetrieveResult | None:
        assert all(isinstance(s, PC.FilterSpec) for s in specSet)
        self.calls.append(("RetrievePropertiesEx", options.maxObjects))
        return self._pages[None]

    def ContinueRetrievePropertiesEx(self, token: str) -> PC.RetrieveResult | None:  # noqa: N802
        self.calls.append(("ContinueRetrievePropertiesEx", token))
        return self._pages[token]

    def CancelRetrievePropertiesEx(self, token: str) -> None:  # noqa: N802
        self.calls.append(("CancelRetrievePropertiesEx", token))

    def methods(self, name: str) -> list[Any]:
        return [arg for method, arg in self.calls if method == name]


SPEC = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=vim.Folder("group-d1", stub=None))],
                     propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])


def _morefs(contents: Iterator[Any]) -> list[str]:
    return [oc.obj._moId for oc in contents]


def test_paging_follows_tokens_until_there_is_none() -> None:
    collector = PagingCollector(_pages(3, 3, 2))
    assert _morefs(inventory.retrieve_all(collector, SPEC, page_size=3)) == [f"vm-{i}" for i in range(8)]
    assert collector.calls == [("RetrievePropertiesEx", 3),
                               ("ContinueRetrievePropertiesEx", "token-1"),
                               ("ContinueRetrievePropertiesEx", "token-2")]


def test_single_page_needs_no_continuation() -> None:
    collector = PagingCollector(_pages(4))
    assert len(_morefs(inventory.retrieve_all(collector, SPEC))) == 4
    assert collector.calls == [("RetrievePropertiesEx", inventory.DEFAULT_PAGE_SIZE)]


def test_empty_result_yields_nothing() -> None:
    collector = PagingCollector([])
    assert list(inventory.retrieve_all(collector, SPEC)) == []
    assert collector.methods("CancelRetrievePropertiesEx") == []


@pytest.mark.parametrize(("taken", "cancelled", "continued"), [
    (1, "token-1", []),                 # stopped inside the first page
    (3, "token-1", []),                 # stopped after the first page, before continuing
    (4, "token-2", ["token-1"]),        # stopped inside the second page
])
def test_stopping_early_cancels_the_open_retrieval(taken: int, cancelled: str,
                                                   continued: list[str]) -> None:
    collector = PagingCollector(_pages(3, 3, 2))
    contents = inventory.retrieve_all(collector, SPEC, page_size=3)
    got = [next(contents) for _ in range(taken)]
    contents.close()
    assert len(got) == taken
    assert collector.methods("ContinueRetrievePropertiesEx") == continued
    assert collector.methods("CancelRetrievePropertiesEx") == [cancelled]


def test_stopping_on_the_last_page_cancels_nothing() -> None:
    collector = PagingCollector(_pages(3, 3))
    contents = inventory.retrieve_all(collector, SPEC, page_size=3)
    for _ in range(4):
        next(contents)
    contents.close()
    assert collector.methods("CancelRetrievePropertiesEx") == []


# --------------------------------------------------------------------------- VM facts


def _label(text: str) -> vim.Description:
    return vim.Description(label=text, summary=text)


def _disk(key: int, backing: DEV.VirtualDevice.BackingInfo) -> DEV.VirtualDisk:
    return DEV.VirtualDisk(key=key, deviceInfo=_label(f"Hard disk {key}"), controllerKey=1000,
                           unitNumber=key % 16, capacityInKB=1024, backing=backing)


def _passthrough(key: int, backing: DEV.VirtualDevice.BackingInfo) -> DEV.VirtualPCIPassthrough:
    return DEV.VirtualPCIPassthrough(key=key, deviceInfo=_label(f"PCI device {key}"), backing=backing)


def _tree(moref: str, name: str, minute: int, children: Sequence[Any] = (),
          quiesced: bool = False) -> vim.vm.SnapshotTree:
    return vim.vm.SnapshotTree(
        snapshot=vim.vm.Snapshot(moref, stub=None), vm=vim.VirtualMachine("vm-7", stub=None),
        name=name, description=f"{name} description", id=minute,
        createTime=datetime.datetime(2024, 1, 1, 0, minute, tzinfo=datetime.UTC),
        state="poweredOn", quiesced=quiesced, childSnapshotList=list(children))


DS1 = vim.Datastore("datastore-11", stub=None)
DS2 = vim.Datastore("datastore-12", stub=None)


def _vm_props(**overrides: Any) -> dict[str, Any]:
    """One VM's properties as RetrievePropertiesEx returns them (VM_PATHS)."""
    props: dict[str, Any] = {
        "name": "db1",
        "parent": vim.Folder("group-v22", stub=None),
        "datastore": [DS1, DS2],
        "layoutEx.file": [
            vim.vm.FileLayoutEx.FileInfo(key=0, name="[ds1] db1/db1.vmx", type="config"),
            vim.vm.FileLayoutEx.FileInfo(key=1, name="[ds2] db1/db1.vmdk", type="diskDescriptor")],
        "capability.snapshotOperationsSupported": True,
        "capability.quiescedSnapshotsSupported": False,
        "capability.memorySnapshotsSupported": True,
        "config.instanceUuid": "5003aaaa-0000-0000-0000-000000000001",
        "config.uuid": "4203bbbb-0000-0000-0000-000000000001",
        "config.template": False,
        "config.guestId": "windows2019srv_64Guest",
        "config.hardware.device": [],
        "config.files.vmPathName": "[ds1] db1/db1.vmx",
        "runtime.powerState": vim.VirtualMachine.PowerState.poweredOn,
        "runtime.host": vim.HostSystem("host-9", stub=None),
        "runtime.consolidationNeeded": False,
        "runtime.faultToleranceState": vim.VirtualMachine.FaultToleranceState.notConfigured,
        "guest.toolsRunningStatus": "guestToolsRunning",
        "guest.guestFamily": "windowsGuest",
        "customValue": [vim.CustomFieldsManager.StringValue(key=101, value="gold"),
                        vim.CustomFieldsManager.StringValue(key=102, value="x")],
    }
    props.update(overrides)
    return props


def _facts(**overrides: Any):  # noqa: ANN202 - VmFacts
    return inventory.vm_facts("ep", "vc-uuid", "vm-7", _vm_props(**overrides),
                              {"group-v22": "/DC0/vm/prod"}, {101: "tier"})


def test_vm_facts_plain_fields() -> None:
    vm = _facts()
    assert (vm.endpoint_id, vm.moref, vm.name, vm.vcenter_uuid) == ("ep", "vm-7", "db1", "vc-uuid")
    assert vm.instance_uuid == "5003aaaa-0000-0000-0000-000000000001"
    assert vm.power_state is PowerState.ON and vm.template is False
    assert vm.host == "host-9" and vm.folder_path == "/DC0/vm/prod"
    assert vm.guest_family == "windows" and vm.tools_running is True
    assert (vm.snapshot_supported, vm.quiesce_supported, vm.memory_supported) == (True, False, True)
    assert vm.datastores == ("datastore-11", "datastore-12")
    assert vm.files == ("[ds1] db1/db1.vmx", "[ds2] db1/db1.vmdk")
    assert vm.vmx_path == "[ds1] db1/db1.vmx"
    # Field names resolved through the CustomFieldsManager; an unknown key keeps its number.
    assert vm.custom_attributes == (("102", "x"), ("tier", "gold"))
    assert vm.devices == () and vm.disks == () and vm.snapshots == ()


def test_vm_facts_missing_properties_mean_defaults() -> None:
    """An inaccessible VM reports few paths: conversion must not fail or invent facts."""
    vm = inventory.vm_facts("ep", None, "vm-9", {"name": "ghost"}, {}, {})
    assert vm.power_state is PowerState.OFF and vm.tools_running is False
    assert vm.snapshot_supported is None and vm.files == () and vm.folder_path == ""


@pytest.mark.parametrize(("device", "expected"), [
    (_passthrough(4000, DEV.VirtualPCIPassthrough.DeviceBackingInfo(
        id="0000:3b:00.0", deviceId="1eb8", systemId="sys", vendorId=0x10DE, deviceName="T4")),
     DeviceFacts(4000, "PCI device 4000", "passthrough", "")),
    (_passthrough(4001, DEV.VirtualPCIPassthrough.DynamicBackingInfo(deviceName="T4")),
     DeviceFacts(4001, "PCI device 4001", "passthrough", "dynamic DirectPath")),
    (_passthrough(4002, DEV.VirtualPCIPassthrough.VmiopBackingInfo(vgpu="grid_t4-4q")),
     DeviceFacts(4002, "PCI device 4002", "vgpu", "grid_t4-4q")),
    (DEV.VirtualSriovEthernetCard(key=4003, deviceInfo=_label("Network adapter 2")),
     DeviceFacts(4003, "Network adapter 2", "sriov", "")),
    (DEV.VirtualNVDIMM(key=4004, deviceInfo=_label("NVDIMM 0"), capacityInMB=16),
     DeviceFacts(4004, "NVDIMM 0", "nvdimm", "")),
    (DEV.ParaVirtualSCSIController(key=1001, deviceInfo=_label("SCSI controller 1"), busNumber=1,
                                   sharedBus="physicalSharing"),
     DeviceFacts(1001, "SCSI controller 1", "scsi_controller", "physicalSharing")),
    (DEV.VirtualLsiLogicSASController(key=1002, deviceInfo=_label("SCSI controller 2"), busNumber=2,
                                      sharedBus="virtualSharing"),
     DeviceFacts(1002, "SCSI controller 2", "scsi_controller", "virtualSharing")),
], ids=["passthrough", "dynamic-directpath", "vgpu", "sriov", "nvdimm", "scsi-physical",
        "scsi-virtual"])
def test_devices_that_limit_snapshots(device: Any, expected: DeviceFacts) -> None:
    assert _facts(**{"config.hardware.device": [device]}).devices == (expected,)


def test_ordinary_devices_are_not_reported() -> None:
    ordinary = [
        DEV.ParaVirtualSCSIController(key=1000, busNumber=0, sharedBus="noSharing"),
        DEV.VirtualVmxnet3(key=4000, deviceInfo=_label("Network adapter 1")),
        DEV.VirtualCdrom(key=3000),
    ]
    assert _facts(**{"config.hardware.device": ordinary}).devices == ()


def test_disks_with_mode_sharing_and_rdm() -> None:
    flat = DEV.VirtualDisk.FlatVer2BackingInfo(fileName="[ds1] db1/db1.vmdk", datastore=DS1,
                                               diskMode="persistent")
    independent = DEV.VirtualDisk.FlatVer2BackingInfo(
        fileName="[ds2] db1/logs.vmdk", datastore=DS2, diskMode="independent_persistent",
        sharing="sharingMultiWriter")
    rdm = DEV.VirtualDisk.RawDiskMappingVer1BackingInfo(
        fileName="[ds1] db1/rdm.vmdk", datastore=DS1, compatibilityMode="physicalMode",
        diskMode="independent_persistent", lunUuid="0200000000600a0b80", deviceName="vml.02")
    vm = _facts(**{"config.hardware.device": [_disk(2000, flat), _disk(2001, independent),
                                              _disk(2002, rdm)]})
    assert [(d.key, d.label, d.file, d.datastore) for d in vm.disks] == [
        (2000, "Hard disk 2000", "[ds1] db1/db1.vmdk", "datastore-11"),
        (2001, "Hard disk 2001", "[ds2] db1/logs.vmdk", "datastore-12"),
        (2002, "Hard disk 2002", "[ds1] db1/rdm.vmdk", "datastore-11"),
    ]
    assert [(d.disk_mode, d.sharing, d.rdm_mode) for d in vm.disks] == [
        ("persistent", None, None),
        ("independent_persistent", "sharingMultiWriter", None),
        ("independent_persistent", None, "physicalMode"),
    ]


def test_snapshot_tree_is_flattened_depth_first_with_depth() -> None:
    info = vim.vm.SnapshotInfo(
        currentSnapshot=vim.vm.Snapshot("snapshot-3", stub=None),
        rootSnapshotList=[
            _tree("snapshot-1", "base", 1, [
                _tree("snapshot-2", "child", 2, [_tree("snapshot-3", "grandchild", 3, quiesced=True)]),
                _tree("snapshot-4", "sibling", 4),
            ]),
            _tree("snapshot-5", "second root", 5),
        ])
    snaps = _facts(snapshot=info).snapshots
    assert [(s.moref, s.name, s.depth) for s in snaps] == [
        ("snapshot-1", "base", 1), ("snapshot-2", "child", 2), ("snapshot-3", "grandchild", 3),
        ("snapshot-4", "sibling", 2), ("snapshot-5", "second root", 1)]
    assert [s.quiesced for s in snaps] == [False, False, True, False, False]
    assert snaps[0].create_time == datetime.datetime(2024, 1, 1, 0, 1, tzinfo=datetime.UTC).timestamp()
    assert snaps[0].description == "base description"


def test_template_and_fault_tolerance() -> None:
    vm = _facts(**{"config.template": True, "runtime.powerState": "poweredOff",
                   "runtime.faultToleranceState": vim.VirtualMachine.FaultToleranceState.running,
                   "runtime.consolidationNeeded": True})
    assert vm.template is True and vm.power_state is PowerState.OFF
    assert vm.fault_tolerance_state == "running" and vm.consolidation_needed is True


def test_folder_paths_start_at_the_datacenter() -> None:
    """The container view holds everything below the root folder, not the root itself."""
    folders = {  # moref -> (name, parent); "group-d1" is the root folder, not in the view
        "datacenter-2": ("DC0", "group-d1"),
        "group-v3": ("vm", "datacenter-2"),
        "group-v22": ("prod", "group-v3"),
        "group-d7": ("Europe", "group-d1"),
        "datacenter-8": ("DC1", "group-d7"),
        "group-v9": ("vm", "datacenter-8"),
    }
    assert inventory._folder_paths(folders) == {
        "datacenter-2": "/DC0", "group-v3": "/DC0/vm", "group-v22": "/DC0/vm/prod",
        "group-d7": "/Europe", "datacenter-8": "/Europe/DC1", "group-v9": "/Europe/DC1/vm"}
    assert inventory._folder_paths({"group-d1": ("Datacenters", None)}) == {"group-d1": ""}


# --------------------------------------------------------------------------- datastore facts


def test_nfs_datastore_facts() -> None:
    info = vim.host.NasDatastoreInfo(
        name="ds1", url="ds:///vmfs/volumes/abc/", freeSpace=1, maxFileSize=1,
        nas=vim.host.NasVolume(type="NFS", name="ds1", capacity=10, remoteHost="10.0.0.1",
                               remotePath="/mnt/tank/vm",
                               remoteHostNames=["10.0.0.1", "nas.example.com"]))
    ds = inventory.datastore_facts("ep", "datastore-11", {
        "name": "ds1", "summary.type": "NFS", "summary.url": "ds:///vmfs/volumes/abc/",
        "summary.accessible": True, "summary.freeSpace": 5, "summary.capacity": 10, "info": info})
    assert (ds.name, ds.type, ds.url) == ("ds1", "NFS", "ds:///vmfs/volumes/abc/")
    # remoteHost first, remoteHostNames after, each spelling once.
    assert ds.nfs_remote_hosts == ("10.0.0.1", "nas.example.com")
    assert ds.nfs_remote_path == "/mnt/tank/vm" and ds.vmfs_extents == ()
    assert (ds.accessible, ds.free_space, ds.capacity) == (True, 5, 10)


def test_nfs41_datastore_with_host_names_only() -> None:
    info = vim.host.NasDatastoreInfo(
        name="ds41", url="u", freeSpace=1, maxFileSize=1,
        nas=vim.host.NasVolume(type="NFS41", name="ds41", capacity=10, remotePath="/mnt/tank/41",
                               remoteHostNames=["10.0.0.1", "10.0.0.2"]))
    ds = inventory.datastore_facts("ep", "datastore-41", {"name": "ds41", "summary.type": "NFS41",
                                                          "info": info})
    assert ds.nfs_remote_hosts == ("10.0.0.1", "10.0.0.2") and ds.type == "NFS41"


def test_vmfs_datastore_facts() -> None:
    extents = [vim.host.ScsiDisk.Partition(diskName="naa.6589cfc000000a1b", partition=1),
               vim.host.ScsiDisk.Partition(diskName="naa.6589cfc000000a1c", partition=1)]
    info = vim.host.VmfsDatastoreInfo(
        name="vmfs1", url="u", freeSpace=1, maxFileSize=1,
        vmfs=vim.host.VmfsVolume(type="VMFS", name="vmfs1", capacity=10, blockSizeMb=1,
                                 maxBlocks=1, majorVersion=6, version="6.82", uuid="u",
                                 extent=extents, vmfsUpgradable=False))
    ds = inventory.datastore_facts("ep", "datastore-21", {"name": "vmfs1", "summary.type": "VMFS",
                                                          "summary.accessible": False, "info": info})
    assert ds.vmfs_extents == ("naa.6589cfc000000a1b", "naa.6589cfc000000a1c")
    assert ds.nfs_remote_hosts == () and ds.nfs_remote_path is None
    assert ds.accessible is False


# --------------------------------------------------------------------------- TLS pins


CANONICAL = ":".join(["AB"] * 31 + ["0F"])


@pytest.mark.parametrize("spelling", [
    CANONICAL, CANONICAL.lower(), CANONICAL.replace(":", ""), CANONICAL.replace(":", " "),
    f"  {CANONICAL.lower()}\n",
])
def test_fingerprint_spellings_normalise(spelling: str) -> None:
    assert tls.normalize_fingerprint(spelling) == CANONICAL


@pytest.mark.parametrize("bad", [
    "", "AB:" * 20,                                   # SHA-1 length
    CANONICAL + ":00",                                # too long
    CANONICAL.replace("AB", "GZ", 1),                 # not hexadecimal
])
def test_bad_fingerprints_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        tls.normalize_fingerprint(bad)


def test_fingerprint_of_der() -> None:
    assert tls.fingerprint_of(b"") == (
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55")


# --------------------------------------------------------------------------- API versions


SERVICE_VERSIONS = """<?xml version="1.0" encoding="UTF-8" ?>
<namespaces version="1.0">
 <namespace>
  <name>urn:vim25</name>
  <version>8.0.2.0</version>
  <priorVersions>
   <version>8.0.1.0</version>
   <version>7.0.3.0</version>
   <version>6.5</version>
  </priorVersions>
 </namespace>
 <namespace>
  <name>urn:vim2</name>
  <version>2.0</version>
 </namespace>
</namespaces>
"""


def test_service_versions_are_read_from_the_vim25_namespace_only() -> None:
    assert session._parse_service_versions(SERVICE_VERSIONS) == ["8.0.2.0", "8.0.1.0", "7.0.3.0", "6.5"]


def test_service_versions_without_prior_versions() -> None:
    xml = "<namespaces><namespace><name>urn:vim25</name><version>6.5</version></namespace></namespaces>"
    assert session._parse_service_versions(xml) == ["6.5"]


@pytest.mark.parametrize(("offered", "expected"), [
    (["8.0.2.0", "8.0.1.0", "7.0.3.0", "6.5"], ("8.0.2.0", "vim.version.v8_0_2_0")),
    (["6.5", "6.0", "5.5"], ("6.5", "vim.version.version11")),
    (["6.0", "6.7.3", "6.5"], ("6.7.3", "vim.version.version15")),  # numeric, not list order
    (["6.7", "6.10"], ("6.7", "vim.version.version12")),          # 6.10 unknown to pyVmomi
])
def test_choose_version_takes_the_newest_common(offered: list[str], expected: tuple[str, str]) -> None:
    assert session.choose_version(offered) == expected


def test_a_server_newer_than_pyvmomi_gets_pyvmomi_newest() -> None:
    known = session._known_versions()
    newest = max(known, key=session._version_tuple)
    assert session.choose_version(["99.0.0.0"]) == (newest, known[newest])


@pytest.mark.parametrize("offered", [[], ["1.0"], ["0.9", "1.1"]])
def test_no_common_older_version_is_refused(offered: list[str]) -> None:
    with pytest.raises(ApiTooOld, match="no API version in common"):
        session.choose_version(offered)
