"""Restore one VM of a coordinated ZFS snapshot beside its original, in one call.

Everything is checked before anything is made (the snapshot and its manifest, the VM in
it, the new name, the host and whether it can reach this NAS), each problem an
``InvalidInput`` naming the field. Then, each step journaled first: clone the snapshot
(never touching it or its dataset), share the clone (a filesystem over NFS; a zvol as a new
iSCSI LUN of the targets that export the original), mount it on the host as a new
datastore (the LUN's VMFS copy with a new signature), register the VM from it under the
new name, revert it to the VMware snapshot the run made (a crash-consistent or
powered-off VM has none: its disks are the point), set its NICs not to connect (unless
asked), and power it on only when asked, answering "I copied it" so it gets a new identity.
A step that fails takes away everything made before it; a process that dies is finished or
undone by ``reconcile_restores``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets

from ..domain import restore as names
from ..domain.errors import InvalidInput
from ..domain.model import Provider
from ..domain.restore import (
    RestorePlan,
    RestoreRequest,
    RestoreState,
    RestoreStep,
    Transport,
    lun_ref,
    parse_lun_ref,
    point_of,
)
from ..domain.selection import parse_datastore_path
from ..domain.storage import normalize_naa
from ..domain.zfs_names import snapshot_problem
from ..engine.context import snapshot_name
from ..engine.journal import JournalError, RunRecord
from ..engine.ports import describe
from ..zfs import clone as zfs_clone
from ..zfs.snapshot import PROP_RUN, get_properties
from . import history
from .restore_ports import HostInfo, RestoreHypervisor
from .restore_steps import (
    Progress,
    RestoreFailed,
    RestoreParts,
    RestoreResult,
    finish_state,
    journaled,
    no_progress,
    record_of,
    take_away,
)


def snapshot_run(parts: RestoreParts, snapshot: str) -> RunRecord:
    """The coordinated run that took ``snapshot`` (its manifest), or why there is none."""
    dataset, _, name = snapshot.partition("@")
    problem = snapshot_problem(dataset, name) if name else "is not DATASET@SNAPSHOT"
    if problem:
        raise InvalidInput.single("snapshot", f"'{snapshot}' {problem}")
    if not zfs_clone.exists(parts.shell, snapshot):
        raise InvalidInput.single("snapshot", f"{snapshot} does not exist")
    record = history.find_run(parts.journal, snapshot,
                              lambda s: get_properties(parts.shell, s, [PROP_RUN]).get(PROP_RUN) or None)
    if record is None:
        raise InvalidInput.single("snapshot", (
            f"{snapshot} has no manifest of this product: it was not taken by a coordinated run "
            f"(no {PROP_RUN} property), or its run is not in this journal"))
    return record


def _manifest_entry(parts: RestoreParts, request: RestoreRequest) -> tuple[str, dict]:
    """The run id and the VM's manifest entry, from the snapshot's run."""
    snapshot = request.snapshot
    record = snapshot_run(parts, snapshot)
    entries = [v for v in record.document.get("vms", ()) if v.get("name") == request.vm]
    if not entries:
        known = ", ".join(sorted(v.get("name", "?") for v in record.document.get("vms", ()))) or "none"
        raise InvalidInput.single("--vm", f"no VM named '{request.vm}' in the manifest of {snapshot} "
                                          f"(its VMs: {known})")
    if len(entries) > 1:
        raise InvalidInput.single("--vm", f"{len(entries)} VMs are named '{request.vm}' in the manifest of "
                                          f"{snapshot}; rename one and restore by the other's name")
    entry = entries[0]
    if entry.get("provider", Provider.VSPHERE) != Provider.VSPHERE:
        raise InvalidInput.single("--vm", f"'{request.vm}' is a libvirt guest: restore covers VMware VMs")
    return record.run_id, entry


def _files_at_snapshot(hv: RestoreHypervisor, entry: dict) -> tuple[str | None, tuple[str, ...]]:
    """The VM's .vmx and disks as the manifest recorded them when the snapshot was taken (the
    VM may have moved since); for a manifest from before they were recorded, where the VM is
    now; (None, ()) when neither is known."""
    if entry.get("vmx_path"):
        return entry["vmx_path"], tuple(entry.get("disk_files") or ())
    original = hv.layout(entry["moref"])
    return (original.vmx_path, tuple(original.disks)) if original is not None else (None, ())


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the VM's files are in the snapshot, and how a host reaches a clone of it."""

    transport: Transport
    datastore: str          # the datastore its .vmx was on
    vmx: str                # the .vmx below that datastore's root
    subdir: str = ""        # NFS: the datastore's root below the dataset's mountpoint
    lun: str = ""           # VMFS: the NAA of the datastore's LUN, which the zvol is

    def reaches(self, parts: RestoreParts, host: HostInfo) -> bool:
        """Whether the host can mount a clone: it mounts this NAS over NFS, or sees the
        original's LUN (so it is logged in to the targets the clone's LUN joins)."""
        if self.transport is Transport.VMFS:
            return self.lun in host.luns
        return bool(set(host.nfs_servers) & set(parts.nas_addresses))

    def unreached(self, parts: RestoreParts) -> str:
        """Why a host that does not reach it cannot be used, in words."""
        if self.transport is Transport.VMFS:
            return (f"does not see LUN naa.{self.lun} of [{self.datastore}]: it is not logged in to the "
                    "iSCSI target that exports it, so it would not see the clone's LUN either")
        addresses = ", ".join(parts.nas_addresses)
        return f"mounts no NFS datastore from this NAS ({addresses}), so it may not reach it"


def source_of(parts: RestoreParts, hv: RestoreHypervisor, vm: str, snapshot: str, entry: dict) -> Source:
    """Where the VM's files are in ``snapshot``, refused when the snapshot does not hold them all."""
    dataset = snapshot.partition("@")[0]
    volume = zfs_clone.kind(parts.shell, dataset) == "volume"
    vmx_path, disks = _files_at_snapshot(hv, entry)
    if vmx_path is None:
        if volume:
            raise InvalidInput.single("--vm", f"neither the manifest nor vSphere says where '{vm}' has its "
                                              "files")
        # Neither recorded nor there any more: vSphere's own layout, checked by the registration.
        return Source(Transport.NFS, dataset.rsplit("/", 1)[-1], f"{vm}/{vm}.vmx")
    where = parse_datastore_path(vmx_path)
    if where is None:
        raise InvalidInput.single("--vm", f"'{vm}' has no .vmx path vSphere can say")
    datastore, vmx = where
    elsewhere = sorted({d for d in disks if not d.startswith(f"[{datastore}]")})
    if elsewhere:
        raise InvalidInput.single("--vm", (
            f"'{vm}' has disks on other datastores than its .vmx's ({', '.join(elsewhere)}): the "
            f"clone of {dataset} has only [{datastore}], and registering it would share the others "
            "with the running original"))
    if volume:
        return Source(Transport.VMFS, datastore, vmx, lun=_lun(parts, hv, vm, dataset, datastore))
    return Source(Transport.NFS, datastore, vmx, subdir=_export_subdir(parts, hv, vm, dataset, datastore))


def _lun(parts: RestoreParts, hv: RestoreHypervisor, vm: str, zvol: str, datastore: str) -> str:
    """The NAA of the LUN of the VM's VMFS datastore, refused unless it is ``zvol``'s and the
    datastore's only one."""
    extents = hv.vmfs_extents(datastore)
    if extents is None:
        raise InvalidInput.single("--vm", f"'{vm}' has its .vmx on {datastore}, which is not a VMFS "
                                          f"datastore: the zvol {zvol} holds VMFS datastores only")
    exported = set(parts.luns.naa_of(zvol))
    if not exported:
        raise InvalidInput.single("snapshot", f"no iSCSI extent of this NAS exports {zvol}, so no host can "
                                              "have had a datastore on it")
    found = [normalize_naa(e) for e in extents]
    if not exported & set(found):
        raise InvalidInput.single("--vm", (
            f"'{vm}' has its .vmx on datastore {datastore} (LUN {', '.join(extents)}), which is not on "
            f"{zvol}: restore it from a snapshot of the zvol behind {datastore}"))
    if len(found) > 1:
        raise InvalidInput.single("--vm", (
            f"{datastore} spans {len(found)} LUNs ({', '.join(extents)}): a clone of {zvol} holds one "
            "of them; restore covers VMFS datastores on one LUN"))
    return found[0]


def _host(parts: RestoreParts, hosts: list[HostInfo], request: RestoreRequest, entry: dict,
          source: Source) -> HostInfo:
    """The host to mount the clone on."""
    if source.transport is Transport.NFS and not parts.nas_addresses:
        raise InvalidInput.single("config.nas.addresses", "give the addresses ESXi hosts mount this NAS by: "
                                                          "a restore mounts the clone there")
    by_name = {h.name: h for h in hosts}
    reachable = [h for h in hosts if h.connected and source.reaches(parts, h)]
    if request.host is not None:
        host = by_name.get(request.host)
        if host is None:
            raise InvalidInput.single("--host", f"no host named '{request.host}' (hosts: "
                                                f"{', '.join(sorted(by_name)) or 'none'})")
    else:
        host = next((h for h in hosts if h.moref == entry.get("host")), None) or (reachable or [None])[0]
        if host is None:
            raise InvalidInput.single("--host", f"no connected host reaches the clone: every one "
                                                f"{source.unreached(parts)}; give one with --host")
    if not host.connected:
        raise InvalidInput.single("--host", f"{host.name} is not connected, or is in maintenance mode")
    if not source.reaches(parts, host):
        others = ", ".join(h.name for h in reachable) or "none"
        raise InvalidInput.single("--host", f"{host.name} {source.unreached(parts)}; hosts that do: {others}")
    return host


def plan_restore(parts: RestoreParts, hv: RestoreHypervisor, request: RestoreRequest, run_id: str,
                 entry: dict, restore_id: str) -> RestorePlan:
    """Check everything a restore needs before anything is made."""
    return plan_from(parts, hv, request, run_id, entry, restore_id,
                     source_of(parts, hv, request.vm, request.snapshot, entry), hv.hosts())


def plan_from(parts: RestoreParts, hv: RestoreHypervisor, request: RestoreRequest, run_id: str,
              entry: dict, restore_id: str, source: Source, hosts: list[HostInfo]) -> RestorePlan:
    """``plan_restore`` with the VM's files and the endpoint's hosts read already (a preview
    reads the hosts once for all its VMs)."""
    dataset = request.snapshot.partition("@")[0]
    new_name = request.new_name or names.default_name(request.vm, restore_id)
    if not new_name.strip() or len(new_name) > 80:
        raise InvalidInput.single("--as", "give a VM name of 1 to 80 characters")
    if hv.find_vm(new_name):
        raise InvalidInput.single("--as", f"a VM named '{new_name}' exists already")
    host = _host(parts, hosts, request, entry, source)
    address = next((a for a in parts.nas_addresses if a in host.nfs_servers), "") \
        if source.transport is Transport.NFS else ""
    datastore = names.datastore_name(source.datastore, restore_id)
    if hv.find_datastore(datastore):
        raise InvalidInput.single("restore", f"a datastore named {datastore} exists already; try again")
    clone = names.clone_name(dataset, restore_id)
    if zfs_clone.exists(parts.shell, clone):
        raise InvalidInput.single("restore", f"{clone} exists already; try again")
    revert_to, point = point_of(entry)
    if revert_to is not None and revert_to != snapshot_name(run_id):
        raise InvalidInput.single("--vm", f"the manifest names the VMware snapshot {revert_to}, which does "
                                          f"not carry this run's marker {snapshot_name(run_id)}")
    return RestorePlan(
        restore_id=restore_id, run_id=run_id, snapshot=request.snapshot, endpoint_id=entry["endpoint_id"],
        vm_name=request.vm, vm_moref=entry["moref"], new_name=new_name, host_moref=host.moref,
        host_name=host.name, clone=clone, datastore=datastore, nas_address=address, vmx_path=source.vmx,
        revert_to=revert_to, point=point, power_on=request.power_on, connect_network=request.connect_network,
        export_subdir=source.subdir, transport=source.transport, source_lun=source.lun)


def check_export(parts: RestoreParts, plan: RestorePlan) -> None:
    """Refuse, before anything is made, what the NAS's sharing could not do for the plan."""
    if plan.transport is Transport.VMFS:
        parts.luns.check("snapshot", plan.snapshot.partition("@")[0])
    else:
        parts.sharing.check("--host", (plan.host_name,))


def _export_subdir(parts: RestoreParts, hv: RestoreHypervisor, vm: str, dataset: str, datastore: str) -> str:
    """Where the VM's datastore is within ``dataset`` ("": its mountpoint): refused when the
    dataset does not hold it (the VM's .vmx is on another dataset's datastore)."""
    export = hv.nfs_export(datastore)
    if export is None:
        raise InvalidInput.single("--vm", f"'{vm}' has its .vmx on {datastore}, which is not an NFS "
                                          f"datastore: a snapshot of the filesystem {dataset} holds NFS "
                                          "datastores only")
    mountpoint = zfs_clone.mountpoint(parts.shell, dataset).rstrip("/")
    export = export.rstrip("/")
    if export == mountpoint:
        return ""
    if export.startswith(f"{mountpoint}/"):
        return export[len(mountpoint) + 1:]
    raise InvalidInput.single("--vm", (
        f"'{vm}' has its .vmx on datastore {datastore} ({export}), which {dataset} (at {mountpoint}) does "
        f"not hold: restore it from a snapshot of the dataset behind {datastore}"))


def restore(parts: RestoreParts, request: RestoreRequest, progress: Progress = no_progress) -> RestoreResult:
    """Restore the VM; raises ``InvalidInput`` (nothing made) or ``RestoreFailed`` (what was
    made is taken away again, or left for cleanup when it cannot be)."""
    progress(0, f"checking {request.snapshot} and {request.vm}")
    run_id, entry = _manifest_entry(parts, request)
    restore_id = secrets.token_hex(4)
    hv = parts.open_endpoint(entry["endpoint_id"])
    try:
        plan = plan_restore(parts, hv, request, run_id, entry, restore_id)
        check_export(parts, plan)
        parts.journal.start_restore(plan.to_dict(), parts.clock(), os.getpid())
        try:
            notes = _read_back(hv, _make(parts, hv, plan, progress))
        except (JournalError, KeyboardInterrupt):
            raise   # the journal is unusable or the user stopped: reconcile decides later
        except Exception as exc:  # noqa: BLE001 - everything made is taken away again
            message = describe(exc)
            record = record_of(parts.journal, plan.restore_id)
            problems = take_away(parts, hv, record, force=True)
            record = finish_state(parts, record, problems, RestoreState.UNDONE, error=message)
            left = (f"; not taken away: {'; '.join(problems)} ('restore cleanup {restore_id}')" if problems
                    else "; everything it made was taken away again")
            raise RestoreFailed(f"restore {restore_id} failed: {message}{left}",
                                RestoreResult.of(record)) from None
    finally:
        hv.close()
    parts.journal.set_restore_state(plan.restore_id, RestoreState.RESTORED, parts.clock())
    progress(100, f"{plan.new_name} restored: {plan.point}")
    return RestoreResult.of(record_of(parts.journal, plan.restore_id), notes)


def _read_back(hv: RestoreHypervisor, vm: str) -> tuple[str, ...]:
    """What vSphere says of the copy now (what a person checks, not what was asked)."""
    layout = hv.layout(vm)
    if layout is None:
        return ("the copy could not be read back",)
    connecting = sum(layout.nics_start_connected)
    return (f"read back: current snapshot {layout.current_snapshot or 'none'}, {layout.power_state.value}, "
            f"{connecting} of {len(layout.nics_start_connected)} NIC(s) connect at power-on",
            f"disks: {', '.join(layout.disks) or 'none'}")


def _make(parts: RestoreParts, hv: RestoreHypervisor, plan: RestorePlan, progress: Progress) -> str:
    """Every step; returns the copy's moref."""
    rid = plan.restore_id
    progress(10, f"cloning {plan.snapshot} to {plan.clone}")
    journaled(parts, rid, RestoreStep.CLONE, lambda: zfs_clone.clone(parts.shell, plan.snapshot, plan.clone),
              plan.clone)
    if plan.transport is Transport.VMFS:
        return _mount_lun(parts, hv, plan, progress)
    root = zfs_clone.mountpoint(parts.shell, plan.clone).rstrip("/")
    export = f"{root}/{plan.export_subdir}" if plan.export_subdir else root
    progress(25, f"sharing {export} with {plan.host_name}")
    journaled(parts, rid, RestoreStep.SHARE,
              lambda: parts.sharing.share(plan.clone, export, (plan.host_name,)))
    progress(40, f"mounting {plan.nas_address}:{export} on {plan.host_name} as {plan.datastore}")
    journaled(parts, rid, RestoreStep.DATASTORE,
              lambda: hv.mount_nfs(plan.host_moref, plan.nas_address, export, plan.datastore))
    return finish(parts, hv, plan, progress)


def _mount_lun(parts: RestoreParts, hv: RestoreHypervisor, plan: RestorePlan, progress: Progress) -> str:
    """The clone of a zvol: a new LUN beside the original's, its VMFS copy resignatured."""
    rid = plan.restore_id
    zvol = plan.snapshot.partition("@")[0]
    progress(25, f"exposing {plan.clone} as an iSCSI LUN of the targets that export {zvol}")

    def expose() -> str:
        lun = parts.luns.expose(plan.clone, zvol)
        return lun_ref(lun.ref, lun.naa)

    ref = journaled(parts, rid, RestoreStep.SHARE, expose, plan.clone)
    naa = parse_lun_ref(ref or "")[1]
    progress(40, f"rescanning {plan.host_name}, mounting the VMFS copy on LUN naa.{naa} as {plan.datastore}")
    journaled(parts, rid, RestoreStep.DATASTORE,
              lambda: hv.mount_vmfs_copy(plan.host_moref, naa, plan.datastore))
    return finish(parts, hv, plan, progress)


def finish(parts: RestoreParts, hv: RestoreHypervisor, plan: RestorePlan, progress: Progress,
           vm: str | None = None, power_on: bool | None = None) -> str:
    """The steps from the registration on (``vm``: registered already, by an interrupted
    restore that reconcile finishes; it never powers a VM on)."""
    rid = plan.restore_id
    if vm is None:
        progress(55, f"registering {plan.vmx_datastore_path} as {plan.new_name}")
        vm = journaled(parts, rid, RestoreStep.REGISTER,
                       lambda: hv.register(plan.vmx_datastore_path, plan.new_name, plan.host_moref))
    assert vm is not None
    if plan.revert_to:
        layout = hv.layout(vm)
        marked = [s for s in (layout.snapshots if layout else ()) if s.name == plan.revert_to]
        if not marked:
            raise LookupError(f"{plan.new_name} has no VMware snapshot {plan.revert_to}: its .vmsd in the "
                              "snapshot did not record it")
        target = max(marked, key=lambda s: s.create_time)
        progress(70, f"reverting {plan.new_name} to {plan.revert_to}")
        journaled(parts, rid, RestoreStep.REVERT, lambda: hv.revert(target.moref), target.moref)
    if not plan.connect_network:
        progress(80, f"setting the NICs of {plan.new_name} not to connect")
        journaled(parts, rid, RestoreStep.NETWORK, lambda: str(hv.disconnect_network(vm)))
    if plan.power_on if power_on is None else power_on:
        progress(90, f"powering {plan.new_name} on")
        journaled(parts, rid, RestoreStep.POWER_ON,
                  lambda: hv.power_on(vm, parts.power_on_timeout_s) or "no question", vm)
    return vm
