"""Which VMs a ZFS snapshot of a dataset must coordinate, and what limits each (pure, no I/O).

``build_plan`` takes the inventories read from every endpoint, the mappings and the NAS's own
storage facts, and returns a ``Plan``: the datastores the snapshot covers, every VM with a
file on them (once, however it was reached), its status, blockers and readable reasons.

Which datastores a plan covers (decided here, documented for users):

1. A datastore is *backed* by the datasets that ``storage.match_datastore`` proves from its
   NFS export or VMFS extents. That proof wins: such a datastore is covered when its dataset
   is in the plan even if no mapping names it, and a mapping that names it for another
   dataset is reported as contradicted (and ignored for that datastore).
2. A datastore with no proof (its NFS host is not a known address of the NAS, its extents are
   not known zvols, or facts are missing) is backed by the datasets its mappings name: the
   person's statement is trusted, with a warning saying what did not match.
3. Mapping names are resolved to datastore morefs once per endpoint, by exact name; an
   unresolvable name is a plan warning, never an exception.

Scope: the plan's dataset, its descendants when recursive, minus every excluded dataset and
its descendants (the periodic task's ``exclude``).

Everything is dict lookups keyed by exact strings: planning n VMs with k files each is
O(n * k) plus one sort for stable output.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .model import (
    Blocker,
    BlockerKind,
    DatastoreFacts,
    Inventory,
    Mapping,
    PowerState,
    Provider,
    SnapshotFacts,
    VmFacts,
)
from .storage import (
    DatastoreMatch,
    StorageFacts,
    StorageIndex,
    dataset_for_file,
    dataset_for_host_path,
    index_storage,
    match_datastore,
)

PLAN_SCHEMA_VERSION = 1

# Every VMware snapshot this product creates is named with this prefix; finding one in a plan
# means an earlier run did not clean up (reconcile removes them).
SNAPSHOT_NAME_PREFIX = "truenas-vmware-coord:"

# "[datastore name] dir/file.vmdk"
_FILE_RE = re.compile(r"^\[(?P<ds>[^\]]*)\]\s*(?P<path>.*)$")


class VmStatus(enum.StrEnum):
    """Whether a VM needs anything done for the snapshot to be consistent."""

    NEEDS_ACTION = "needs_action"     # powered on: a strategy (policy ladder) must be applied
    NOTHING_TO_DO = "nothing_to_do"   # off, suspended or a template: already consistent on disk


@dataclass(frozen=True)
class SelectionSettings:
    """Thresholds for blockers. VMware: at most 32 levels, 2-3 in practice, none > 24-72 h."""

    max_chain_depth: int = 3                 # existing levels at which a new one is too deep
    max_snapshot_age: float = 72 * 3600.0    # seconds
    snapshot_name_prefix: str = SNAPSHOT_NAME_PREFIX


DEFAULT_SETTINGS = SelectionSettings()


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """The datasets a ZFS snapshot covers (its consistency group)."""

    dataset: str
    recursive: bool = False
    exclude: tuple[str, ...] = ()

    @functools.cached_property
    def _excluded(self) -> frozenset[str]:
        return frozenset(self.exclude)

    def contains(self, name: str) -> bool:
        if not (name == self.dataset or (self.recursive and name.startswith(self.dataset + "/"))):
            return False
        # An excluded dataset's children are excluded too: walk up name's ancestors.
        parts = name.split("/")
        return not any("/".join(parts[:i]) in self._excluded for i in range(1, len(parts) + 1))


def scope_mappings(mappings: Iterable[Mapping], scope: Scope) -> tuple[Mapping, ...]:
    """The mappings whose dataset the snapshot covers (the engine reads their endpoints)."""
    return tuple(sorted((m for m in mappings if scope.contains(m.dataset)), key=lambda m: m.id))


# --------------------------------------------------------------------------- datastores


@dataclass(frozen=True)
class DatastoreBacking:
    """One datastore of one endpoint and the datasets that back it."""

    endpoint_id: str
    moref: str
    name: str
    type: str
    accessible: bool
    via: str                         # "nfs" | "vmfs" (proved) | "mapping" (trusted)
    datasets: tuple[str, ...]
    detail: str
    mapping_ids: tuple[str, ...]     # mappings that name this datastore
    match: DatastoreMatch

    def datasets_of(self, index: StorageIndex, relative: str) -> tuple[str, ...]:
        if self.via == "mapping":
            return self.datasets
        return dataset_for_file(self.match, index, relative)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id,
            "moref": self.moref,
            "name": self.name,
            "type": self.type,
            "accessible": self.accessible,
            "via": self.via,
            "datasets": list(self.datasets),
            "detail": self.detail,
            "mapping_ids": list(self.mapping_ids),
        }


@dataclass
class EndpointDatastores:
    """Per-endpoint lookups: datastore name -> morefs, moref -> backing (NAS datastores only)."""

    by_name: dict[str, tuple[str, ...]]
    backing: dict[str, DatastoreBacking]
    hosts: dict[str, str]


def resolve_endpoint(
    inventory: Inventory,
    mappings: list[Mapping],
    index: StorageIndex,
    scope: Scope,
    warnings: list[str],
) -> EndpointDatastores:
    names: dict[str, list[str]] = defaultdict(list)
    for ds in inventory.datastores:
        names[ds.name].append(ds.moref)
    by_name = {n: tuple(sorted(m)) for n, m in names.items()}
    lowered = {n.lower(): n for n in by_name}

    named: dict[str, list[Mapping]] = defaultdict(list)
    for m in mappings:
        morefs = by_name.get(m.datastore, ())
        if not morefs and scope.contains(m.dataset):
            hint = lowered.get(m.datastore.lower())
            warnings.append(
                f"mapping {m.id}: no datastore named '{m.datastore}' on endpoint "
                f"{inventory.endpoint_id} (names must match exactly"
                + (f"; did you mean '{hint}'?)" if hint else ")")
            )
        if len(morefs) > 1 and scope.contains(m.dataset):
            warnings.append(
                f"mapping {m.id}: {len(morefs)} datastores are named '{m.datastore}' on "
                f"endpoint {inventory.endpoint_id} ({', '.join(morefs)}); all are considered"
            )
        for moref in morefs:
            named[moref].append(m)

    backing: dict[str, DatastoreBacking] = {}
    for ds in inventory.datastores:
        b = _backing(ds, match_datastore(ds, index), named.get(ds.moref, []), scope, warnings)
        if b is not None:
            backing[ds.moref] = b
    return EndpointDatastores(by_name, backing, dict(inventory.hosts))


def _backing(
    ds: DatastoreFacts,
    match: DatastoreMatch,
    mappings: list[Mapping],
    scope: Scope,
    warnings: list[str],
) -> DatastoreBacking | None:
    mapped = sorted({m.dataset for m in mappings})
    ids = tuple(sorted(m.id for m in mappings))
    where = f"datastore '{ds.name}' ({ds.moref}) on endpoint {ds.endpoint_id}"
    if match.datasets:
        via, datasets, detail = match.via, match.datasets, match.detail
        # Silent when the proved datasets are in scope anyway (a mapping naming the parent
        # of a child's export, in a recursive plan): the outcome is the same.
        covered = all(scope.contains(d) for d in datasets)
        for m in mappings:
            if m.dataset not in datasets and scope.contains(m.dataset) and not covered:
                warnings.append(
                    f"mapping {m.id} names {where} for dataset {m.dataset}, but {match.detail} "
                    f"(dataset {', '.join(datasets)}): the mapping is ignored for it"
                )
    elif mapped:
        via, datasets = "mapping", tuple(mapped)
        detail = f"trusted from mapping(s) {', '.join(ids)}; {match.detail}"
        if any(scope.contains(d) for d in mapped):
            warnings.append(f"{where} is not proved to be on this NAS ({match.detail}); "
                            f"trusting mapping(s) {', '.join(ids)}")
    else:
        return None
    if match.foreign_extents and any(scope.contains(d) for d in datasets):
        warnings.append(f"{where} also spans extents that are not on this NAS "
                        f"({', '.join(match.foreign_extents)}): its VMs cannot be consistent")
    return DatastoreBacking(
        ds.endpoint_id, ds.moref, ds.name, ds.type, ds.accessible, via, datasets, detail, ids,
        match,
    )


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileOnDataset:
    """One VM file placed on a datastore of this NAS (or, for a libvirt guest, a disk the
    host opens on one of its datasets or zvols), and the datasets holding it."""

    path: str                  # "[ds] dir/file", or a host path for a libvirt guest
    source: str                # "disk" | "vmx" | "layout" | "datastore" (no file list known)
    datastore: str | None      # datastore moref; None for a libvirt guest's disk
    datasets: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "datastore": self.datastore,
            "datasets": list(self.datasets),
        }


def parse_datastore_path(path: str) -> tuple[str, str] | None:
    """``"[ds1] vm/vm.vmx"`` -> ``("ds1", "vm/vm.vmx")``; None when not in that form."""
    m = _FILE_RE.match(path.strip())
    return (m.group("ds"), m.group("path")) if m else None


def _vm_file_refs(vm: VmFacts) -> Iterator[tuple[str, str, str | None]]:
    """(path, source, datastore moref if known) for every file the VM has, each path once."""
    seen: set[str] = set()
    refs = [(d.file, "disk", d.datastore) for d in vm.disks]
    if vm.vmx_path:
        refs.append((vm.vmx_path, "vmx", None))
    refs.extend((f, "layout", None) for f in vm.files)
    for path, source, moref in refs:
        if path and path not in seen:
            seen.add(path)
            yield path, source, moref


def guest_disks_on_nas(vm: VmFacts, index: StorageIndex) -> tuple[FileOnDataset, ...]:
    """Every disk of a libvirt guest that the host opens on a dataset or zvol of this NAS."""
    out = []
    for disk in vm.disks:
        dataset = dataset_for_host_path(index, disk.file) if disk.file.startswith("/") else None
        if dataset is not None:
            out.append(FileOnDataset(disk.file, "disk", None, (dataset,)))
    return tuple(out)


def vm_files_on_nas(
    vm: VmFacts, view: EndpointDatastores, index: StorageIndex
) -> tuple[FileOnDataset, ...]:
    """Every file of ``vm`` that is on a datastore backed by a dataset of this NAS."""
    if vm.provider is Provider.LIBVIRT:
        return guest_disks_on_nas(vm, index)
    out: list[FileOnDataset] = []
    own = frozenset(vm.datastores)
    any_file = False
    for path, source, moref in _vm_file_refs(vm):
        any_file = True
        parsed = parse_datastore_path(path)
        relative = parsed[1] if parsed else ""
        if moref is not None:
            candidates: tuple[str, ...] = (moref,)
        elif parsed is not None:
            candidates = view.by_name.get(parsed[0], ())
            # Same name in two datacenters: the VM's own datastore list tells which one.
            if len(candidates) > 1 and own & set(candidates):
                candidates = tuple(c for c in candidates if c in own)
        else:
            candidates = ()
        for c in candidates:
            b = view.backing.get(c)
            if b is not None:
                out.append(FileOnDataset(path, source, c, b.datasets_of(index, relative)))
    if not any_file:
        # No file list at all (e.g. an inaccessible VM): fall back to vm.datastore.
        for c in vm.datastores:
            b = view.backing.get(c)
            if b is not None:
                out.append(FileOnDataset(f"[{b.name}]", "datastore", c, b.datasets))
    return tuple(out)


# --------------------------------------------------------------------------- de-duplication


@dataclass(frozen=True)
class VmGroup:
    """One VM, however many times and through whichever endpoints it was reported."""

    key: str
    primary: VmFacts                    # the report acted through (a vCenter's when there is one)
    others: tuple[VmFacts, ...] = ()    # the same VM as reported elsewhere


def _preference(vm: VmFacts) -> tuple[int, str, str]:
    # Act through vCenter rather than a host it manages; then a stable, order-free choice.
    return (0 if vm.vcenter_uuid else 1, vm.endpoint_id, vm.moref)


def _moref_key(vm: VmFacts) -> str:
    return f"moref:{vm.endpoint_id}/{vm.moref}"


def deduplicate(vms: Iterable[VmFacts]) -> tuple[tuple[VmGroup, ...], tuple[str, ...]]:
    """Group reports of the same VM; returns (groups sorted by key, warnings).

    Identity is (vCenter instance, VM instance UUID); BIOS UUIDs are never used (clones keep
    them). A standalone ESXi endpoint reports no vCenter instance: its report joins the one
    vCenter that reports the same instance UUID. When that is ambiguous (several vCenters, or
    one endpoint reporting two VMs with one UUID), the reports stay separate: planning a VM
    twice costs a second snapshot, merging two VMs would leave one unprotected.
    """
    by_uuid: dict[str, list[VmFacts]] = defaultdict(list)
    groups: list[VmGroup] = []
    for vm in _unique_reports(vms).values():
        kind, value = vm.identity
        if kind == "uuid":
            by_uuid[value].append(vm)
        else:
            groups.append(VmGroup(_moref_key(vm), vm))

    warnings: list[str] = []
    for uuid, reports in by_uuid.items():
        vcenters = sorted({r.vcenter_uuid for r in reports if r.vcenter_uuid})
        buckets: dict[str, list[VmFacts]] = defaultdict(list)
        for r in reports:
            if r.vcenter_uuid or len(vcenters) <= 1:
                buckets[r.vcenter_uuid or (vcenters[0] if vcenters else "-")].append(r)
            else:
                warnings.append(
                    f"VM '{r.name}' ({r.endpoint_id}/{r.moref}) has instance UUID {uuid}, "
                    f"which vCenters {', '.join(vcenters)} also report: planned separately"
                )
                groups.append(VmGroup(_moref_key(r), r))
        for vcenter, members in buckets.items():
            groups.extend(_merge(vcenter, uuid, members, warnings))
    return tuple(sorted(groups, key=lambda g: g.key)), tuple(sorted(warnings))


def _unique_reports(vms: Iterable[VmFacts]) -> dict[tuple[str, str], VmFacts]:
    """One report per (endpoint, moref): the same report twice (an inventory passed twice)
    is one report; of two conflicting ones the choice does not depend on input order."""
    unique: dict[tuple[str, str], VmFacts] = {}
    for vm in vms:
        k = (vm.endpoint_id, vm.moref)
        if k not in unique or repr(vm) < repr(unique[k]):
            unique[k] = vm
    return unique


def _merge(vcenter: str, uuid: str, members: list[VmFacts], warnings: list[str]) -> list[VmGroup]:
    per_endpoint: dict[str, int] = defaultdict(int)
    for m in members:
        per_endpoint[m.endpoint_id] += 1
    if any(n > 1 for n in per_endpoint.values()):
        names = ", ".join(sorted(f"'{m.name}' ({m.endpoint_id}/{m.moref})" for m in members))
        warnings.append(f"instance UUID {uuid} is shared by several VMs of one endpoint "
                        f"({names}): planned separately")
        return [VmGroup(_moref_key(m), m) for m in members]
    ordered = sorted(members, key=_preference)
    return [VmGroup(f"uuid:{vcenter}:{uuid}", ordered[0], tuple(ordered[1:]))]


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Classification:
    status: VmStatus
    reason: str
    blockers: tuple[Blocker, ...]
    notes: tuple[str, ...]
    leftovers: tuple[SnapshotFacts, ...]


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


def _device_blocker(kind: str, label: str, detail: str) -> Blocker | None:
    extra = f" ({detail})" if detail else ""
    if kind == "passthrough":
        return Blocker(BlockerKind.PASSTHROUGH, f"PCI passthrough device '{label}'{extra}")
    if kind == "vgpu":
        return Blocker(BlockerKind.VGPU, f"vGPU device '{label}'{extra}")
    if kind == "sriov":
        return Blocker(BlockerKind.SRIOV, f"SR-IOV network adapter '{label}'")
    if kind == "nvdimm":
        return Blocker(BlockerKind.NVDIMM, f"NVDIMM '{label}'")
    if kind == "scsi_controller" and detail not in ("", "noSharing"):
        return Blocker(BlockerKind.BUS_SHARING, f"SCSI controller '{label}' shares its bus "
                                                f"({detail})")
    return None


# A libvirt guest's agent as the inventory found it -> what that blocks, in plain words.
_AGENT_BLOCKERS = {
    "no_channel": (BlockerKind.NO_AGENT_CHANNEL,
                   "the guest has no guest agent channel (org.qemu.guest_agent.0)"),
    "not_connected": (BlockerKind.AGENT_NOT_ANSWERING,
                      "the guest agent is not connected (is qemu-guest-agent running in the guest?)"),
    "not_answering": (BlockerKind.AGENT_NOT_ANSWERING, "the guest agent did not answer"),
    "already_frozen": (BlockerKind.AGENT_REFUSES_FREEZE,
                       "the guest's file systems are frozen already (by another tool, or by a run of "
                       "this product that reconcile has not finished yet)"),
    "freeze_disabled": (BlockerKind.AGENT_REFUSES_FREEZE,
                        "the guest agent has disabled its freeze commands (a Windows agent without "
                        "the QEMU VSS provider, or an agent started with them blocked)"),
}


def _guest_blockers(vm: VmFacts) -> Iterator[Blocker]:
    if vm.power_state is PowerState.PAUSED:
        yield Blocker(BlockerKind.GUEST_PAUSED, "the guest is paused (not by this product): its agent "
                                                "cannot run, and it is resumed by whoever paused it")
        return
    found = _AGENT_BLOCKERS.get(vm.agent or "")
    if found is not None:
        kind, words = found
        yield Blocker(kind, f"{words}: {vm.agent_detail}" if vm.agent_detail else words)


def find_blockers(
    vm: VmFacts, *, now: float, settings: SelectionSettings = DEFAULT_SETTINGS
) -> tuple[Blocker, ...]:
    """Every fact that limits how a *running* VM can be made consistent, with readable detail."""
    out = [b for d in vm.devices if (b := _device_blocker(d.kind, d.label, d.detail))]
    if vm.provider is Provider.LIBVIRT:
        return (*out, *_guest_blockers(vm))
    if vm.fault_tolerance_state not in ("", "notConfigured"):
        out.append(Blocker(BlockerKind.FAULT_TOLERANCE,
                           f"Fault Tolerance is configured (state {vm.fault_tolerance_state})"))
    for d in vm.disks:
        if d.rdm_mode == "physicalMode":
            out.append(Blocker(BlockerKind.PHYSICAL_RDM,
                               f"'{d.label}' is a physical-mode RDM ({d.file})"))
        elif d.disk_mode.startswith("independent"):
            out.append(Blocker(BlockerKind.INDEPENDENT_DISK,
                               f"'{d.label}' ({d.file}) is {d.disk_mode}: a VMware snapshot "
                               "will not protect it"))
        if d.sharing == "sharingMultiWriter":
            out.append(Blocker(BlockerKind.MULTI_WRITER,
                               f"'{d.label}' ({d.file}) is shared multi-writer"))
    if not vm.tools_running:
        out.append(Blocker(BlockerKind.NO_TOOLS, "VMware Tools are not running: a quiesce "
                                                 "request would be silently ignored"))
    for flag, kind, prop in (
        (vm.snapshot_supported, BlockerKind.NO_SNAPSHOT_CAPABILITY, "snapshotOperationsSupported"),
        (vm.quiesce_supported, BlockerKind.NO_QUIESCE_CAPABILITY, "quiescedSnapshotsSupported"),
        (vm.memory_supported, BlockerKind.NO_MEMORY_CAPABILITY, "memorySnapshotsSupported"),
    ):
        if flag is False:   # None means "not reported", which blocks nothing
            out.append(Blocker(kind, f"vSphere reports capability.{prop} = false"))
    if vm.consolidation_needed:
        out.append(Blocker(BlockerKind.CONSOLIDATION_NEEDED, "the disks need consolidation: an "
                                                             "earlier snapshot removal failed"))
    out.extend(_chain_blockers(vm.snapshots, now, settings))
    return tuple(out)


def _chain_blockers(
    snapshots: tuple[SnapshotFacts, ...], now: float, settings: SelectionSettings
) -> Iterator[Blocker]:
    if not snapshots:
        return
    depth = max(s.depth for s in snapshots)
    if depth >= settings.max_chain_depth:
        yield Blocker(BlockerKind.DEEP_SNAPSHOT_CHAIN,
                      f"{depth} snapshot level(s) already ({len(snapshots)} snapshot(s)); "
                      f"limit {settings.max_chain_depth}")
    oldest = min(snapshots, key=lambda s: (s.create_time, s.moref))
    if now - oldest.create_time > settings.max_snapshot_age:
        yield Blocker(BlockerKind.DEEP_SNAPSHOT_CHAIN,
                      f"oldest snapshot '{oldest.name}' is {_age(now - oldest.create_time)} "
                      f"old (limit {_age(settings.max_snapshot_age)})")


def classify_vm(
    vm: VmFacts, *, now: float, settings: SelectionSettings = DEFAULT_SETTINGS
) -> Classification:
    """Status, blockers and notes for one VM. Blockers are listed only for running VMs:
    a VM that is off, suspended or a template needs nothing and nothing can block it."""
    leftovers = tuple(s for s in vm.snapshots if s.name.startswith(settings.snapshot_name_prefix))
    notes = [f"leftover snapshot '{s.name}' ({s.moref}) from an earlier run, "
             f"{_age(now - s.create_time)} old: reconcile removes it" for s in leftovers]
    blockers: tuple[Blocker, ...] = ()
    if vm.template:
        status, reason = VmStatus.NOTHING_TO_DO, "template: it never runs, its disks are consistent"
    elif vm.power_state == PowerState.OFF:
        status, reason = VmStatus.NOTHING_TO_DO, "powered off: its disks are already consistent"
    elif vm.power_state == PowerState.SUSPENDED:
        status = VmStatus.NOTHING_TO_DO
        reason = "suspended: its memory and disks are already saved consistently"
    else:
        status, blockers = VmStatus.NEEDS_ACTION, find_blockers(vm, now=now, settings=settings)
        reason = ("paused: its disks are only crash-consistent" if vm.power_state is PowerState.PAUSED
                  else "running: needs its file systems frozen or another strategy"
                  if vm.provider is Provider.LIBVIRT
                  else "powered on: needs a VMware snapshot or another strategy")
        if blockers:
            kinds = sorted({b.kind.value for b in blockers})
            reason += f"; limited by {', '.join(kinds)}"
    if status is VmStatus.NOTHING_TO_DO and vm.consolidation_needed:
        notes.append("the disks need consolidation (not needed for this snapshot)")
    return Classification(status, reason, blockers, tuple(notes), leftovers)


# --------------------------------------------------------------------------- plan


class PolicyDecision(Protocol):
    """What the policy step attaches to a planned VM (``policy.Resolution`` fits).

    Its ``to_dict()`` must carry at least ``policy`` (matched name or None), ``ladder`` (the
    strategies after pruning) and ``pruned`` (``[{"rung", "reason"}]``); see plan.json.
    """

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class VmPlan:
    key: str                             # VmGroup.key: stable identity within a plan
    facts: VmFacts                       # the report the engine acts through
    also_seen_as: tuple[tuple[str, str], ...]   # (endpoint_id, moref) of other reports
    host_name: str | None
    status: VmStatus
    status_reason: str
    blockers: tuple[Blocker, ...]
    notes: tuple[str, ...]
    files: tuple[FileOnDataset, ...]     # files on datastores of this NAS
    datasets: tuple[str, ...]            # datasets in the plan that hold its files
    other_datasets: tuple[str, ...]      # datasets of this NAS outside the plan holding files
    leftover_snapshots: tuple[str, ...]  # morefs of snapshots carrying our name prefix
    mapping_ids: tuple[str, ...] = ()    # mappings naming the datastores it was found on
    policy: PolicyDecision | None = None  # filled after planning (dataclasses.replace)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "facts": _facts_dict(self.facts),
            "also_seen_as": [{"endpoint_id": e, "moref": m} for e, m in self.also_seen_as],
            "host_name": self.host_name,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "blockers": [{"kind": b.kind.value, "detail": b.detail} for b in self.blockers],
            "notes": list(self.notes),
            "files": [f.to_dict() for f in self.files],
            "datasets": list(self.datasets),
            "other_datasets": list(self.other_datasets),
            "leftover_snapshots": list(self.leftover_snapshots),
            "mapping_ids": list(self.mapping_ids),
            "policy": self.policy.to_dict() if self.policy is not None else None,
        }


@dataclass(frozen=True)
class Plan:
    dataset: str
    recursive: bool
    exclude: tuple[str, ...]
    created_at: float
    datasets: tuple[str, ...]            # known datasets (storage facts, mappings) in scope
    datastores: tuple[DatastoreBacking, ...]
    vms: tuple[VmPlan, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for v in self.vms:
            counts[v.status.value] += 1
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "dataset": self.dataset,
            "recursive": self.recursive,
            "exclude": list(self.exclude),
            "created_at": self.created_at,
            "datasets": list(self.datasets),
            "summary": {
                "vms": len(self.vms),
                "needs_action": counts[VmStatus.NEEDS_ACTION.value],
                "nothing_to_do": counts[VmStatus.NOTHING_TO_DO.value],
                "with_blockers": sum(1 for v in self.vms if v.blockers),
                "datastores": len(self.datastores),
                "warnings": len(self.warnings),
            },
            "datastores": [d.to_dict() for d in self.datastores],
            "vms": [v.to_dict() for v in self.vms],
            "warnings": list(self.warnings),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _facts_dict(vm: VmFacts) -> dict[str, Any]:
    d = _jsonable(dataclasses.asdict(vm))
    d["custom_attributes"] = [{"key": k, "value": v} for k, v in vm.custom_attributes]
    return d


def build_plan(
    dataset: str,
    *,
    inventories: Iterable[Inventory],
    mappings: Iterable[Mapping],
    storage: StorageFacts,
    now: float,
    recursive: bool = False,
    exclude: Iterable[str] = (),
    settings: SelectionSettings = DEFAULT_SETTINGS,
) -> Plan:
    """The plan for a ZFS snapshot of ``dataset`` (see the module docstring for the rules).

    Pure and deterministic: the same inputs in any order give an equal plan.
    """
    scope = Scope(dataset, recursive, tuple(sorted(set(exclude))))
    index = index_storage(storage)
    mappings = sorted(mappings, key=lambda m: (m.id, m.endpoint_id, m.datastore, m.dataset))
    warnings: list[str] = []

    per_endpoint: dict[str, list[Mapping]] = defaultdict(list)
    for m in mappings:
        per_endpoint[m.endpoint_id].append(m)
    views: dict[str, EndpointDatastores] = {}
    reports: list[VmFacts] = []
    for inv in sorted(inventories, key=lambda i: i.endpoint_id):
        views[inv.endpoint_id] = resolve_endpoint(
            inv, per_endpoint.get(inv.endpoint_id, []), index, scope, warnings
        )
        for vm in inv.vms:
            if vm.endpoint_id != inv.endpoint_id:
                # Files are resolved with the endpoint's datastores: the inventory's id wins.
                warnings.append(f"VM '{vm.name}' ({vm.moref}) says endpoint {vm.endpoint_id} "
                                f"but came from {inv.endpoint_id}")
                vm = dataclasses.replace(vm, endpoint_id=inv.endpoint_id)
            reports.append(vm)
    for m in scope_mappings(mappings, scope):
        if m.endpoint_id not in views:
            warnings.append(f"mapping {m.id}: no inventory from endpoint {m.endpoint_id}; "
                            f"VMs on '{m.datastore}' are not in this plan")

    unique = _unique_reports(reports)
    files_of = {k: vm_files_on_nas(vm, views[k[0]], index) for k, vm in unique.items()}
    # De-duplicate only the identities with a file in scope, so that warnings about
    # ambiguous identities concern this plan; all their reports take part in the choice.
    relevant = {vm.identity for k, vm in unique.items()
                if any(scope.contains(d) for f in files_of[k] for d in f.datasets)}
    groups, dedup_warnings = deduplicate(vm for vm in unique.values() if vm.identity in relevant)
    warnings.extend(dedup_warnings)
    vm_plans = [p for g in groups
                if (p := _plan_vm(g, views, files_of, scope, now, settings))]
    vm_plans.sort(key=lambda p: (p.facts.name, p.key))

    datastores = sorted(
        (b for v in views.values() for b in v.backing.values()
         if any(scope.contains(d) for d in b.datasets)),
        key=lambda b: (b.endpoint_id, b.name, b.moref),
    )
    for b in datastores:
        outside = [d for d in b.datasets if not scope.contains(d)]
        if outside:
            warnings.append(f"datastore '{b.name}' ({b.endpoint_id}) spans {', '.join(outside)}, "
                            "which this snapshot does not include: its VMs cannot be consistent")
        if not b.accessible:
            warnings.append(f"datastore '{b.name}' ({b.endpoint_id}) is inaccessible: VMs on it "
                            "may be missing from this plan")
    known = index.datasets | {m.dataset for m in mappings}
    return Plan(
        dataset=dataset,
        recursive=recursive,
        exclude=scope.exclude,
        created_at=now,
        datasets=tuple(sorted(d for d in known if scope.contains(d))),
        datastores=tuple(datastores),
        vms=tuple(vm_plans),
        # Sorted and unique: one warning per fact, in the same order whatever the input order.
        warnings=tuple(sorted(set(warnings))),
    )


def _plan_vm(
    group: VmGroup,
    views: dict[str, EndpointDatastores],
    files_of: dict[tuple[str, str], tuple[FileOnDataset, ...]],
    scope: Scope,
    now: float,
    settings: SelectionSettings,
) -> VmPlan | None:
    files: dict[str, FileOnDataset] = {}
    mapping_ids: set[str] = set()
    for report in (group.primary, *group.others):
        view = views[report.endpoint_id]
        for f in files_of[(report.endpoint_id, report.moref)]:
            files.setdefault(f.path, f)
            if f.datastore is not None:
                mapping_ids.update(view.backing[f.datastore].mapping_ids)
    held = {d for f in files.values() for d in f.datasets}
    inside = tuple(sorted(d for d in held if scope.contains(d)))
    if not inside:
        return None
    vm = group.primary
    c = classify_vm(vm, now=now, settings=settings)
    outside = tuple(sorted(held - set(inside)))
    notes = list(c.notes)
    if outside:
        notes.append(f"also has files on {', '.join(outside)}, which this snapshot does not "
                     "include")
    if group.others:
        notes.append("also reported by " + ", ".join(f"{o.endpoint_id}/{o.moref}"
                                                     for o in group.others) + ": planned once")
    return VmPlan(
        key=group.key,
        facts=vm,
        also_seen_as=tuple((o.endpoint_id, o.moref) for o in group.others),
        host_name=views[vm.endpoint_id].hosts.get(vm.host) if vm.host else None,
        status=c.status,
        status_reason=c.reason,
        blockers=c.blockers,
        notes=tuple(notes),
        files=tuple(sorted(files.values(), key=lambda f: f.path)),
        datasets=inside,
        other_datasets=outside,
        leftover_snapshots=tuple(s.moref for s in c.leftovers),
        mapping_ids=tuple(sorted(mapping_ids)),
    )
