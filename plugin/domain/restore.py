"""A restore, as decided before anything is created (pure; serialises to JSON).

A restore brings one VM of a coordinated ZFS snapshot back beside its original: the
snapshot cloned, the clone shared and mounted as a new datastore, the VM registered from
it under a new name and reverted to the VMware snapshot the run made. The clone of a
filesystem is shared over NFS and mounted by its export; the clone of a zvol (a VMFS
datastore on an iSCSI LUN) is exposed as a new LUN beside the original's and mounted with
a new VMFS signature, since ESXi will not mount a copy under the original's. What point in time
that gives depends on what the run did to the VM (its manifest entry); ``point_of`` says
it in words, and which VMware snapshot to revert to.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .model import Consistency, Strategy

# vSphere refuses datastore names longer than 42 characters.
MAX_DATASTORE_NAME = 42


class RestoreStep(enum.StrEnum):
    """The side effects of a restore, in the order they are made."""

    CLONE = "clone"            # zfs clone of the snapshot
    SHARE = "share"            # the clone exported: an NFS share, or an iSCSI LUN (a zvol's)
    DATASTORE = "datastore"    # mounted on the chosen host (a LUN's VMFS copy resignatured)
    REGISTER = "register"      # the VM registered from the clone
    REVERT = "revert"          # reverted to the run's VMware snapshot
    NETWORK = "network"        # NICs set not to connect at power-on
    POWER_ON = "power_on"      # started (only when asked)
    ATTACH = "attach"          # one of its disks attached to another VM


# What cleanup (and the undo of an interrupted restore) takes away, last made first. The revert
# and the NIC setting went with the VM: their rows are closed once it is unregistered.
UNDONE_IN_ORDER = (RestoreStep.ATTACH, RestoreStep.POWER_ON, RestoreStep.REGISTER, RestoreStep.REVERT,
                   RestoreStep.NETWORK, RestoreStep.DATASTORE, RestoreStep.SHARE, RestoreStep.CLONE)


class Transport(enum.StrEnum):
    """How the host reaches the clone: what the snapshotted dataset is."""

    NFS = "nfs"                # a filesystem: an NFS datastore's export
    VMFS = "vmfs"              # a zvol: a VMFS datastore's iSCSI LUN


class RestoreState(enum.StrEnum):
    RESTORING = "restoring"    # steps under way (or its process died: reconcile decides)
    RESTORED = "restored"      # the copy is there, until cleanup
    UNDONE = "undone"          # failed or interrupted before registration: everything made taken away
    CLEANING = "cleaning"      # cleanup under way (or interrupted: cleanup again)
    CLEANED = "cleaned"        # nothing of it is left

    @property
    def present(self) -> bool:
        """Whether something of the restore may still exist."""
        return self in (RestoreState.RESTORING, RestoreState.RESTORED, RestoreState.CLEANING)


@dataclasses.dataclass(frozen=True)
class RestoreRequest:
    """What a user asks: one VM of one coordinated snapshot, and how to bring it back."""

    snapshot: str                  # "pool/dataset@name"
    vm: str                        # the VM's name in the run's manifest
    new_name: str | None = None    # default: "<vm>-restored-<restore id>"
    host: str | None = None        # an ESXi host's name; default: the VM's host in the manifest
    power_on: bool = False
    connect_network: bool = False


@dataclasses.dataclass(frozen=True)
class RestorePlan:
    """Everything a restore will make, validated; journaled before the first step."""

    restore_id: str
    run_id: str
    snapshot: str
    endpoint_id: str
    vm_name: str
    vm_moref: str                  # the original's, for the record
    new_name: str
    host_moref: str
    host_name: str
    clone: str                     # the clone's dataset
    datastore: str                 # the new datastore's name
    nas_address: str               # how the host mounts this NAS ("" for a LUN)
    vmx_path: str                  # the .vmx relative to the datastore's root: "dir/vm.vmx"
    revert_to: str | None          # the VMware snapshot's name to revert to, None: no revert
    point: str                     # what point in time the restore gives, in words
    power_on: bool = False
    connect_network: bool = False
    export_subdir: str = ""        # the datastore's root below the dataset's mountpoint ("": the same)
    transport: Transport = Transport.NFS
    source_lun: str = ""           # VMFS: the NAA of the original datastore's LUN (the zvol's extent)

    @property
    def vmx_datastore_path(self) -> str:
        return f"[{self.datastore}] {self.vmx_path}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"transport": self.transport.value}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RestorePlan:
        names = {f.name for f in dataclasses.fields(RestorePlan)}
        plan = RestorePlan(**{k: v for k, v in d.items() if k in names})
        return dataclasses.replace(plan, transport=Transport(plan.transport))


def point_of(outcome: dict[str, Any]) -> tuple[str | None, str]:
    """The VMware snapshot to revert to (None: none) and what point the restore gives, from
    the VM's manifest entry."""
    achieved = outcome.get("achieved")
    snapshot = outcome.get("snapshot_name")
    if achieved in (Strategy.QUIESCE, Strategy.MEMORY) and snapshot:
        kind = "quiesced" if outcome.get("quiesced") else (
            "with memory" if achieved == Strategy.MEMORY else "not quiesced: crash-consistent")
        return snapshot, (f"reverted to the VMware snapshot {snapshot} ({kind}) that the run took "
                          "before the ZFS snapshot")
    if achieved in (Strategy.POWER_OFF, Strategy.SUSPEND):
        state = "powered off" if achieved == Strategy.POWER_OFF else "suspended"
        return None, (f"no revert: the VM was {state} by its policy, so the clone's disks are "
                      "consistent as they are")
    why = ("excluded by its policy (not prepared)" if outcome.get("consistency") == Consistency.EXCLUDED
           else "crash-consistent in this snapshot (no VMware snapshot)")
    return None, f"no revert: the VM was {why}, so the clone's disks are the point, as after a power loss"


def lun_ref(extent: str, naa: str) -> str:
    """A LUN's journal reference: the NAS's id of its extent and the NAA hosts see it by."""
    return f"{extent} naa.{naa}"


def parse_lun_ref(ref: str) -> tuple[str, str]:
    """(extent id, NAA) of ``lun_ref``; ("", "") for a reference of another kind."""
    extent, _, naa = ref.partition(" naa.")
    return (extent, naa) if naa else ("", "")


def default_name(vm: str, restore_id: str) -> str:
    return f"{vm}-restored-{restore_id}"


def clone_name(dataset: str, restore_id: str) -> str:
    """A sibling of the snapshotted dataset, so a recursive snapshot of it leaves it out."""
    return f"{dataset}-restore-{restore_id}"


def datastore_name(original: str, restore_id: str) -> str:
    suffix = f"-restore-{restore_id}"
    return original[:MAX_DATASTORE_NAME - len(suffix)] + suffix
