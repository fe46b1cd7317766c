"""Plain data the domain layer decides on.

Everything here is immutable and free of I/O: adapters build these from what vSphere and
ZFS report, the domain layer (selection, policy) decides from them, and the engine acts.
Managed objects are referred to by their moref value (``"vm-42"``) qualified by the
endpoint they came from, never by live pyVmomi objects. A libvirt guest is a VM too: its
"moref" is the domain's UUID, its disks are host paths (``/mnt/tank/vm/disk.img``,
``/dev/zvol/tank/vm/disk0``) instead of ``[datastore] path``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Strategy(enum.StrEnum):
    """How one VM is made consistent for the ZFS snapshot (architecture.md, Strategies)."""

    QUIESCE = "quiesce"
    MEMORY = "memory"
    CRASH = "crash"
    POWER_OFF = "power_off"
    SUSPEND = "suspend"
    EXCLUDE = "exclude"
    FSFREEZE = "fsfreeze"
    PAUSE = "pause"


class Provider(enum.StrEnum):
    """Which kind of hypervisor reports a VM: what its strategies can ask of it."""

    VSPHERE = "vsphere"
    LIBVIRT = "libvirt"


class Consistency(enum.StrEnum):
    """What a VM's data in the ZFS snapshot is, from weakest to strongest.

    ``EXCLUDED`` means "not looked at by request"; ``CRASH`` means the image on disk at the
    instant of the ZFS snapshot; ``MEMORY`` a VMware snapshot with memory state (not
    quiesced); ``QUIESCED`` a snapshot taken with the guest's file systems or applications
    quiesced (VMware Tools, or a libvirt guest's file systems frozen by its agent);
    ``POWERED_OFF`` a VM that was shut down (or suspended) around the snapshot.
    """

    EXCLUDED = "excluded"
    CRASH = "crash"
    MEMORY = "memory"
    QUIESCED = "quiesced"
    POWERED_OFF = "powered_off"

    @property
    def rank(self) -> int:
        return _CONSISTENCY_RANK[self]


_CONSISTENCY_RANK = {
    Consistency.EXCLUDED: 0,
    Consistency.CRASH: 1,
    Consistency.MEMORY: 2,
    Consistency.QUIESCED: 3,
    Consistency.POWERED_OFF: 3,
}


class PowerState(enum.StrEnum):
    ON = "poweredOn"
    OFF = "poweredOff"
    SUSPENDED = "suspended"
    PAUSED = "paused"    # a libvirt guest whose vCPUs are stopped (its agent cannot answer)


class BlockerKind(enum.StrEnum):
    """A fact about a VM that limits which strategies can work.

    The values are the words users write in policy conditions (``has_blocker``).
    """

    PASSTHROUGH = "passthrough"            # VirtualPCIPassthrough, incl. dynamic DirectPath
    VGPU = "vgpu"                          # passthrough with a vmiop (shared GPU) backing
    SRIOV = "sriov"                        # VirtualSriovEthernetCard
    FAULT_TOLERANCE = "fault_tolerance"    # runtime.faultToleranceState != notConfigured
    PHYSICAL_RDM = "physical_rdm"          # RDM in physicalMode
    BUS_SHARING = "bus_sharing"            # SCSI controller sharedBus != noSharing
    MULTI_WRITER = "multi_writer"          # disk sharing == sharingMultiWriter
    NVDIMM = "nvdimm"
    INDEPENDENT_DISK = "independent_disk"  # not protected by a VMware snapshot
    NO_TOOLS = "no_tools"                  # quiesce would be silently ignored
    NO_SNAPSHOT_CAPABILITY = "no_snapshot_capability"
    NO_QUIESCE_CAPABILITY = "no_quiesce_capability"
    NO_MEMORY_CAPABILITY = "no_memory_capability"
    CONSOLIDATION_NEEDED = "consolidation_needed"
    DEEP_SNAPSHOT_CHAIN = "deep_snapshot_chain"
    # libvirt guests: what keeps the guest agent from freezing the guest's file systems
    NO_AGENT_CHANNEL = "no_agent_channel"            # no org.qemu.guest_agent.0 channel
    AGENT_NOT_ANSWERING = "agent_not_answering"      # not connected, or no answer in time
    AGENT_REFUSES_FREEZE = "agent_refuses_freeze"    # its freeze commands are disabled
    GUEST_PAUSED = "guest_paused"                    # paused by someone else: nothing can run


@dataclass(frozen=True)
class DiskFacts:
    """One virtual disk as read from ``config.hardware.device``."""

    key: int
    label: str
    file: str                 # "[datastore name] dir/file.vmdk"
    datastore: str | None     # datastore moref value, when the backing names one
    disk_mode: str = "persistent"
    sharing: str | None = None          # "sharingNone" | "sharingMultiWriter"
    rdm_mode: str | None = None         # "physicalMode" | "virtualMode" for RDM backings


@dataclass(frozen=True)
class DeviceFacts:
    """A non-disk device that matters for snapshots (passthrough, SR-IOV, controllers...)."""

    key: int
    label: str
    kind: str                 # "passthrough" | "vgpu" | "sriov" | "nvdimm" | "scsi_controller"
    detail: str = ""          # e.g. vGPU profile, or the controller's sharedBus value


@dataclass(frozen=True)
class SnapshotFacts:
    """An existing VMware snapshot of a VM (flattened from ``snapshot.rootSnapshotList``)."""

    moref: str
    name: str
    description: str
    create_time: float        # seconds since the epoch
    quiesced: bool
    depth: int                # 1 for a root snapshot


@dataclass(frozen=True)
class VmFacts:
    """Everything the domain layer knows about one VM, read in one inventory pass."""

    endpoint_id: str
    moref: str
    name: str
    instance_uuid: str | None
    bios_uuid: str | None
    vcenter_uuid: str | None              # about.instanceUuid of the endpoint that reported it
    power_state: PowerState
    template: bool = False
    host: str | None = None               # HostSystem moref value
    folder_path: str = ""                 # "/dc/vm/prod/db"
    guest_id: str | None = None           # config.guestId, e.g. "windows9Server64Guest"
    guest_family: str | None = None       # guest.guestFamily or derived: "windows" | "linux" | "other"
    tools_running: bool = False
    consolidation_needed: bool = False
    fault_tolerance_state: str = "notConfigured"
    snapshot_supported: bool | None = None    # capability.snapshotOperationsSupported
    quiesce_supported: bool | None = None     # capability.quiescedSnapshotsSupported
    memory_supported: bool | None = None      # capability.memorySnapshotsSupported
    vmx_path: str | None = None               # "[ds] dir/vm.vmx"
    files: tuple[str, ...] = ()               # layoutEx file names, "[ds] path"
    datastores: tuple[str, ...] = ()          # datastore moref values from vm.datastore
    disks: tuple[DiskFacts, ...] = ()
    devices: tuple[DeviceFacts, ...] = ()
    snapshots: tuple[SnapshotFacts, ...] = ()
    custom_attributes: tuple[tuple[str, str], ...] = ()  # (key name, value), sorted
    provider: Provider = Provider.VSPHERE
    # libvirt guests: the agent as the inventory found it (answering | no_channel | not_connected
    # | not_answering | freeze_disabled | already_frozen), why, and what it would freeze
    # ("/data (ext4 on vda)")
    agent: str | None = None
    agent_detail: str = ""
    guest_filesystems: tuple[str, ...] = ()

    @property
    def identity(self) -> tuple[str, str]:
        """What makes a VM the same VM across endpoints and mappings.

        An ESXi host and the vCenter managing it report the same VM with the same instance
        UUID; BIOS UUIDs are not unique (clones keep them), so they are never used here.
        """
        if self.instance_uuid:
            return ("uuid", self.instance_uuid.lower())
        return ("moref", f"{self.endpoint_id}/{self.moref}")


@dataclass(frozen=True)
class DatastoreFacts:
    """One datastore, enough to match it to a ZFS dataset exactly."""

    endpoint_id: str
    moref: str
    name: str
    type: str                              # "NFS" | "NFS41" | "VMFS" | ...
    url: str = ""
    nfs_remote_hosts: tuple[str, ...] = ()  # nas.remoteHost plus nas.remoteHostNames
    nfs_remote_path: str | None = None
    vmfs_extents: tuple[str, ...] = ()      # "naa.…" disk names
    accessible: bool = True
    free_space: int | None = None
    capacity: int | None = None


@dataclass(frozen=True)
class Inventory:
    """One endpoint's inventory as read in a single PropertyCollector pass."""

    endpoint_id: str
    vcenter_uuid: str | None
    api_version: str
    vms: tuple[VmFacts, ...]
    datastores: tuple[DatastoreFacts, ...]
    hosts: tuple[tuple[str, str], ...] = ()   # (host moref, host name)


@dataclass(frozen=True)
class Blocker:
    """A limiting fact with the words a person reads in the plan."""

    kind: BlockerKind
    detail: str


@dataclass(frozen=True)
class Endpoint:
    """A vCenter or ESXi host the NAS talks to. Never holds the password itself."""

    id: str                   # stable, secret-free: "user@host:port"
    host: str
    port: int = 443
    username: str = ""

    @staticmethod
    def make_id(host: str, port: int, username: str) -> str:
        return f"{username}@{host}:{port}"


@dataclass(frozen=True)
class Mapping:
    """One datastore <-> dataset mapping (a row of TrueNAS's ``storage_vmwareplugin``)."""

    id: str
    endpoint_id: str
    datastore: str            # datastore name as the user configured it
    dataset: str              # ZFS dataset (or zvol) name
