"""In-memory doubles for restore tests: a ZFS host answering the zfs commands a restore
runs, a ``RestoreHypervisor`` with hosts, datastores and VMs, a NAS's iSCSI extents
(``FakeLuns``: a LUN it exposes is what the hosts see), and a journal holding one run's
manifest (of the filesystem ``tank/vm``, or of the zvol ``tank/lun0``). Each refuses what the
real one refuses (a name taken, a VM on a datastore being removed, an unknown snapshot, a
LUN no host sees)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from truenas_vmware_coord.app.restore_ports import HostInfo, Lun, VmLayout
from truenas_vmware_coord.app.restore_steps import RestoreParts
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.model import PowerState, SnapshotFacts
from truenas_vmware_coord.engine.journal import Journal
from truenas_vmware_coord.engine.ports import Gone, Refused
from truenas_vmware_coord.zfs.sharing import ZfsSharing
from truenas_vmware_coord.zfs.shell import ShellError

NAS = "nas.example.com"
DATASET = "tank/vm"
SNAPSHOT = f"{DATASET}@daily"
RUN_ID = "0123456789abcdef"
MARKER = f"truenas-vmware-coord:{RUN_ID}"
ZVOL = "tank/lun0"
ZVOL_SNAPSHOT = f"{ZVOL}@daily"
ZVOL_RUN_ID = "fedcba9876543210"
ZVOL_MARKER = f"truenas-vmware-coord:{ZVOL_RUN_ID}"
LUN = "6589cfc000000aaaaaaaaaaaaaaaaaaa"    # the zvol's extent, as ESXi sees it (naa.<this>)
DEAD_PID = 2**22 + 12345   # above the default pid_max: no such process


class FakeZfsHost:
    """``zfs list/get/set/clone/destroy`` over a dict of datasets and their properties."""

    def __init__(self) -> None:
        self.props: dict[str, dict[str, str]] = {
            DATASET: {"mountpoint": "/mnt/tank/vm", "origin": "-", "sharenfs": "off", "type": "filesystem"},
            ZVOL: {"type": "volume", "origin": "-"},
            ZVOL_SNAPSHOT: {"org.truenas.vmware-coord:run": ZVOL_RUN_ID},
            SNAPSHOT: {"org.truenas.vmware-coord:run": RUN_ID}}
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}   # subcommand -> stderr of its failure

    def run(self, args: list[str]) -> str:
        self.calls.append(args)
        command, name = args[1], args[-1]
        if command in self.fail:
            raise ShellError(args, 1, self.fail[command])
        if command in ("list", "get", "set", "destroy") and name not in self.props:
            raise ShellError(args, 1, f"cannot open '{name}': dataset does not exist")
        if command == "list":
            return f"{name}\n"
        if command == "get":
            return "".join(f"{self.props[name].get(p, '-')}\n" if args[4] == "value" else
                           f"{p}\t{self.props[name].get(p, '-')}\n" for p in args[-2].split(","))
        if command == "set":
            key, _, value = args[2].partition("=")
            self.props[name][key] = value
        elif command == "clone":
            volume = self.props[args[2].partition("@")[0]].get("type") == "volume"
            self.props[name] = {"origin": args[2], "type": "volume"} if volume else {
                "mountpoint": f"/mnt/{name}", "origin": args[2], "sharenfs": "off", "type": "filesystem"}
        elif command == "destroy":
            del self.props[name]
        return ""


@dataclasses.dataclass
class FakeVm:
    moref: str
    name: str
    vmx_path: str
    disks: list[str]
    host: str
    power: PowerState = PowerState.OFF
    snapshots: list[SnapshotFacts] = dataclasses.field(default_factory=list)
    current: str | None = None
    nics: list[bool] = dataclasses.field(default_factory=lambda: [True])


class FakeRestoreHypervisor:
    """One endpoint: hosts esx1 (mounts the NAS over NFS and sees its LUN) and esx2 (local
    storage only); ``luns_seen`` are the NAS's LUNs the hosts see (``FakeLuns`` adds to it)."""

    endpoint_id = "vc1"

    def __init__(self) -> None:
        self.hosts_ = [HostInfo("host-1", "esx1", True, (NAS,), (LUN,)), HostInfo("host-2", "esx2", True, ())]
        self.datastores: dict[str, str] = {"ds-1": "nfs01", "ds-2": "san01"}   # moref -> name
        self.exports = {"nfs01": "/mnt/tank/vm"}   # NFS datastores' exported paths
        self.extents: dict[str, tuple[str, ...]] = {"san01": (f"naa.{LUN}",)}   # VMFS datastores' LUNs
        self.luns_seen = {LUN}
        self.vms: dict[str, FakeVm] = {
            "vm-1": FakeVm("vm-1", "app", "[nfs01] app/app.vmx", ["[nfs01] app/app.vmdk"], "host-1",
                           PowerState.ON),
            "vm-2": FakeVm("vm-2", "db", "[san01] db/db.vmx", ["[san01] db/db.vmdk"], "host-1",
                           PowerState.ON)}
        self.recorded_tree = [SnapshotFacts("snap-old", "before-everything", "", 1.0, False, 1),
                              SnapshotFacts("snap-x", MARKER, "", 2.0, True, 2)]
        self.recorded_trees = {"db": [SnapshotFacts("snap-z", ZVOL_MARKER, "", 2.0, True, 1)]}   # by VM dir
        self.ids = itertools.count(100)
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.closed = 0

    def _act(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def hosts(self) -> list[HostInfo]:
        self.calls.append("hosts")   # one retrieval of every host's properties
        return list(self.hosts_)

    def find_vm(self, name: str) -> str | None:
        return next((m for m, vm in self.vms.items() if vm.name == name), None)

    def layout(self, vm_moref: str) -> VmLayout | None:
        vm = self.vms.get(vm_moref)
        if vm is None:
            return None
        return VmLayout(vm.moref, vm.name, vm.vmx_path, tuple(vm.disks), vm.host, vm.power,
                        tuple(vm.snapshots),
                        next((s.name for s in vm.snapshots if s.moref == vm.current), None), tuple(vm.nics))

    def find_datastore(self, name: str) -> str | None:
        return next((m for m, n in self.datastores.items() if n == name), None)

    def nfs_export(self, datastore_name: str) -> str | None:
        return self.exports.get(datastore_name)

    def vmfs_extents(self, datastore_name: str) -> tuple[str, ...] | None:
        return self.extents.get(datastore_name)

    def mount_vmfs_copy(self, host_moref: str, naa: str, name: str) -> str:
        """Resignatured as ESXi names it, then renamed (``fail["rename"]``: the rename fails)."""
        self._act("mount_vmfs_copy")
        if naa not in self.luns_seen or any(e == f"naa.{naa}" for x in self.extents.values() for e in x):
            raise Refused(f"after a rescan, the host sees no unresolved VMFS copy on LUN naa.{naa}")
        moref = f"ds-{next(self.ids)}"
        self.datastores[moref] = "snap-0badc0de-san01"
        self.extents["snap-0badc0de-san01"] = (f"naa.{naa}",)
        self._act("rename")
        self.extents[name] = self.extents.pop("snap-0badc0de-san01")
        self.datastores[moref] = name
        return moref

    def find_datastore_on(self, naa: str) -> str | None:
        return next((m for m, n in self.datastores.items() if f"naa.{naa}" in self.extents.get(n, ())), None)

    def rescan(self, host_moref: str) -> None:
        self._act(f"rescan {host_moref}")

    def mount_nfs(self, host_moref: str, server: str, export: str, name: str) -> str:
        self._act("mount_nfs")
        if self.find_datastore(name):
            raise Refused(f"a datastore named {name} exists", "DuplicateName")
        moref = f"ds-{next(self.ids)}"
        self.datastores[moref] = name
        self.exports[name] = export
        return moref

    def unmount(self, host_moref: str, datastore_moref: str) -> None:
        self._act("unmount")
        name = self.datastores.get(datastore_moref)
        if name is None:
            raise Gone("no such datastore", "NotFound")
        if any(d.startswith(f"[{name}]") for vm in self.vms.values() for d in [vm.vmx_path, *vm.disks]):
            raise Refused(f"{name} is in use", "ResourceInUse")
        del self.datastores[datastore_moref]
        self.extents.pop(name, None)

    def register(self, vmx_path: str, name: str, host_moref: str) -> str:
        self._act("register")
        datastore, _, vmx = vmx_path[1:].partition("] ")
        moref = f"vm-{next(self.ids)}"
        recorded = self.recorded_trees.get(vmx.partition("/")[0], self.recorded_tree)
        tree = [dataclasses.replace(s, moref=f"{moref}-{s.moref}") for s in recorded]
        self.vms[moref] = FakeVm(moref, name, vmx_path, [f"[{datastore}] {vmx.removesuffix('.vmx')}.vmdk"],
                                 host_moref, snapshots=tree, current=tree[0].moref)
        return moref

    def revert(self, snapshot_moref: str) -> None:
        self._act("revert")
        vm = next(vm for vm in self.vms.values() if any(s.moref == snapshot_moref for s in vm.snapshots))
        vm.current = snapshot_moref

    def disconnect_network(self, vm_moref: str) -> int:
        self._act("disconnect_network")
        vm = self.vms[vm_moref]
        vm.nics = [False for _ in vm.nics]
        return len(vm.nics)

    def power_on(self, vm_moref: str, timeout_s: float) -> str | None:
        self._act("power_on")
        self.vms[vm_moref].power = PowerState.ON
        return "msg.uuid.altered"

    def power_off(self, vm_moref: str) -> None:
        self._act("power_off")
        self.vms[vm_moref].power = PowerState.OFF

    def unregister(self, vm_moref: str) -> None:
        self._act("unregister")
        if self.vms[vm_moref].power is not PowerState.OFF:
            raise Refused("powered on", "InvalidPowerState")
        del self.vms[vm_moref]

    def attach_disk(self, disk_path: str, to_vm_moref: str, writable: bool) -> None:
        self._act("attach_disk")
        self.vms[to_vm_moref].disks.append(disk_path)

    def detach_disk(self, disk_path: str, from_vm_moref: str) -> bool:
        self._act("detach_disk")
        vm = self.vms.get(from_vm_moref)
        if vm is None or disk_path not in vm.disks:
            return False
        vm.disks.remove(disk_path)
        return True

    def close(self) -> None:
        self.closed += 1


class FakeLuns:
    """The NAS's iSCSI extents: ``tank/lun0`` exported as ``LUN``; a clone exposed becomes a
    LUN the hosts see (``hv.luns_seen``)."""

    def __init__(self, hv: FakeRestoreHypervisor) -> None:
        self.hv = hv
        self.extents: dict[str, tuple[str, str]] = {"1": (ZVOL, LUN)}   # id -> (zvol, naa)
        self.ids = itertools.count(2)
        self.refuse: str | None = None   # what check refuses

    def naa_of(self, zvol: str) -> tuple[str, ...]:
        return tuple(naa for z, naa in self.extents.values() if z == zvol)

    def check(self, field: str, zvol: str) -> None:
        if self.refuse:
            raise InvalidInput.single(field, self.refuse)

    def expose(self, clone: str, like: str) -> Lun:
        ref = str(next(self.ids))
        naa = f"6589cfc000000{int(ref):019x}"
        self.extents[ref] = (clone, naa)
        self.hv.luns_seen.add(naa)
        return Lun(ref, naa)

    def unexpose(self, ref: str) -> None:
        for key in [k for k, (zvol, _) in self.extents.items() if ref in (k, zvol)]:
            self.hv.luns_seen.discard(self.extents.pop(key)[1])


def manifest_entry(**overrides: object) -> dict:
    entry = {"endpoint_id": "vc1", "moref": "vm-1", "name": "app", "host": "host-1", "datastores": ["ds-1"],
             "consistency": "quiesced", "achieved": "quiesce", "quiesced": True, "snapshot_name": MARKER,
             "provider": "vsphere"}
    return entry | overrides


def vmfs_entry(**overrides: object) -> dict:
    """The manifest entry of ``db``, on the VMFS datastore ``san01`` of the zvol."""
    return manifest_entry(moref="vm-2", name="db", datastores=["ds-2"], snapshot_name=ZVOL_MARKER,
                          vmx_path="[san01] db/db.vmx", disk_files=["[san01] db/db.vmdk"]) | overrides


def restore_parts(tmp_path: Path, hv: FakeRestoreHypervisor, zfs: FakeZfsHost,
                  vms: list[dict] | None = None, nas: tuple[str, ...] = (NAS,),
                  zvol_vms: list[dict] | None = None) -> RestoreParts:
    journal = Journal(tmp_path / "journal.sqlite")
    for run_id, dataset, snapshot, entries in (
            (RUN_ID, DATASET, SNAPSHOT, vms if vms is not None else [manifest_entry()]),
            (ZVOL_RUN_ID, ZVOL, ZVOL_SNAPSHOT, zvol_vms if zvol_vms is not None else [vmfs_entry()])):
        journal.start_run(run_id, dataset, False, 1.0, None)
        journal.set_snapshot(run_id, snapshot)
        journal.end_run(run_id, {"run_id": run_id, "vms": entries}, 2.0)
    return RestoreParts(journal=journal, shell=zfs, sharing=ZfsSharing(zfs), open_endpoint=lambda _e: hv,
                        nas_addresses=nas, luns=FakeLuns(hv), clock=lambda: 10.0)
