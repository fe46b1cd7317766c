"""In-memory doubles for restore tests: a ZFS host answering the zfs commands a restore
runs, a ``RestoreHypervisor`` with hosts, datastores and VMs, and a journal holding one
run's manifest. Each refuses what the real one refuses (a name taken, a VM on a datastore
being removed, an unknown snapshot)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from truenas_vmware_coord.app.restore_ports import HostInfo, VmLayout
from truenas_vmware_coord.app.restore_steps import RestoreParts
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


class FakeZfsHost:
    """``zfs list/get/set/clone/destroy`` over a dict of datasets and their properties."""

    def __init__(self) -> None:
        self.props: dict[str, dict[str, str]] = {
            DATASET: {"mountpoint": "/mnt/tank/vm", "origin": "-", "sharenfs": "off", "type": "filesystem"},
            "tank/lun0": {"type": "volume"}, "tank/lun0@daily": {},
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
            self.props[name] = {"mountpoint": f"/mnt/{name}", "origin": args[2], "sharenfs": "off"}
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
    """One endpoint: hosts esx1 (mounts the NAS) and esx2 (local storage only)."""

    endpoint_id = "vc1"

    def __init__(self) -> None:
        self.hosts_ = [HostInfo("host-1", "esx1", True, (NAS,)), HostInfo("host-2", "esx2", True, ())]
        self.datastores: dict[str, str] = {"ds-1": "nfs01", "ds-2": "san01"}   # moref -> name
        self.exports = {"nfs01": "/mnt/tank/vm"}   # NFS datastores' exported paths
        self.vms: dict[str, FakeVm] = {"vm-1": FakeVm("vm-1", "app", "[nfs01] app/app.vmx",
                                                      ["[nfs01] app/app.vmdk"], "host-1", PowerState.ON)}
        self.recorded_tree = [SnapshotFacts("snap-old", "before-everything", "", 1.0, False, 1),
                              SnapshotFacts("snap-x", MARKER, "", 2.0, True, 2)]
        self.ids = itertools.count(100)
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.closed = 0

    def _act(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def hosts(self) -> list[HostInfo]:
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

    def register(self, vmx_path: str, name: str, host_moref: str) -> str:
        self._act("register")
        datastore = vmx_path[1:].split("]")[0]
        moref = f"vm-{next(self.ids)}"
        tree = [dataclasses.replace(s, moref=f"{moref}-{s.moref}") for s in self.recorded_tree]
        self.vms[moref] = FakeVm(moref, name, vmx_path, [f"[{datastore}] app/app.vmdk"], host_moref,
                                 snapshots=tree, current=tree[0].moref)
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


def manifest_entry(**overrides: object) -> dict:
    entry = {"endpoint_id": "vc1", "moref": "vm-1", "name": "app", "host": "host-1", "datastores": ["ds-1"],
             "consistency": "quiesced", "achieved": "quiesce", "quiesced": True, "snapshot_name": MARKER,
             "provider": "vsphere"}
    return entry | overrides


def restore_parts(tmp_path: Path, hv: FakeRestoreHypervisor, zfs: FakeZfsHost,
                  vms: list[dict] | None = None, nas: tuple[str, ...] = (NAS,)) -> RestoreParts:
    journal = Journal(tmp_path / "journal.sqlite")
    journal.start_run(RUN_ID, DATASET, False, 1.0, None)
    journal.set_snapshot(RUN_ID, SNAPSHOT)
    journal.end_run(RUN_ID, {"run_id": RUN_ID, "vms": vms if vms is not None else [manifest_entry()]}, 2.0)
    return RestoreParts(journal=journal, shell=zfs, sharing=ZfsSharing(zfs), open_endpoint=lambda _e: hv,
                        nas_addresses=nas, clock=lambda: 10.0)
