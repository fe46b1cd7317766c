"""What a restore needs from vSphere and from the NAS's sharing, in the product's words.

``vsphere/restore.py`` implements ``RestoreHypervisor`` with pyVmomi; ``zfs/sharing.py``
implements ``Sharing`` with ``zfs set sharenfs`` and ``truenas/sharing.py`` with
``sharing.nfs``; ``truenas/iscsi.py`` implements ``LunExport`` with ``iscsi.extent``
(``cli/luns.py`` says why a host without TrueNAS's API has none);
``tests/unit/fake_restore.py`` has in-memory ones. Every method
of ``RestoreHypervisor`` waits for what it starts and raises only the engine's typed
failures (``engine.ports.HypervisorFailure``): the use case never sees a vSphere name.
"""

from __future__ import annotations

import dataclasses
from typing import NoReturn, Protocol

from ..domain.errors import InvalidInput
from ..domain.model import PowerState, SnapshotFacts


@dataclasses.dataclass(frozen=True)
class HostInfo:
    moref: str
    name: str
    connected: bool                       # connected and not in maintenance mode
    nfs_servers: tuple[str, ...] = ()     # remote hosts of the NFS datastores it mounts
    luns: tuple[str, ...] = ()            # NAA ids of the SCSI disks it sees, lowercase, no prefix


@dataclasses.dataclass(frozen=True)
class VmLayout:
    """Where a VM's files are, as vSphere reports them."""

    moref: str
    name: str
    vmx_path: str                         # "[ds] dir/vm.vmx"
    disks: tuple[str, ...]                # "[ds] dir/vm.vmdk", in device order
    host: str | None                      # HostSystem moref
    power_state: PowerState
    snapshots: tuple[SnapshotFacts, ...] = ()
    current_snapshot: str | None = None   # the current snapshot's name
    nics_start_connected: tuple[bool, ...] = ()


class RestoreHypervisor(Protocol):
    """One logged-in endpoint, for restores."""

    endpoint_id: str

    def hosts(self) -> list[HostInfo]: ...

    def find_vm(self, name: str) -> str | None:
        """The moref of the VM with exactly this name, or None."""
        ...

    def layout(self, vm_moref: str) -> VmLayout | None:
        """None when the VM does not exist (any more)."""
        ...

    def find_datastore(self, name: str) -> str | None: ...

    def nfs_export(self, datastore_name: str) -> str | None:
        """The exported path an NFS datastore of that name mounts; None: no such NFS datastore."""
        ...

    def vmfs_extents(self, datastore_name: str) -> tuple[str, ...] | None:
        """The NAA ids of a VMFS datastore's extents; None: no such VMFS datastore."""
        ...

    def mount_nfs(self, host_moref: str, server: str, export: str, name: str) -> str:
        """Mount ``server:export`` on the host as datastore ``name``; returns its moref."""
        ...

    def mount_vmfs_copy(self, host_moref: str, naa: str, name: str) -> str:
        """Rescan the host, mount the VMFS copy it finds on LUN ``naa`` with a new signature
        and name the datastore ``name``; returns its moref."""
        ...

    def find_datastore_on(self, naa: str) -> str | None:
        """The VMFS datastore on LUN ``naa`` (one resignatured but not renamed yet), or None."""
        ...

    def unmount(self, host_moref: str, datastore_moref: str) -> None:
        """Take the datastore off the host: an NFS mount removed; a VMFS volume unmounted and
        its LUNs detached, so that taking the LUN away on the NAS leaves no dead path."""
        ...

    def rescan(self, host_moref: str) -> None:
        """Rescan the host's storage adapters (a LUN taken away on the NAS goes)."""
        ...

    def register(self, vmx_path: str, name: str, host_moref: str) -> str:
        """Register the VM whose .vmx is at ``vmx_path`` under ``name``; returns its moref."""
        ...

    def revert(self, snapshot_moref: str) -> None:
        """Revert to the snapshot without powering the VM on."""
        ...

    def disconnect_network(self, vm_moref: str) -> int:
        """Set every NIC not to connect at power-on; returns how many were changed."""
        ...

    def power_on(self, vm_moref: str, timeout_s: float) -> str | None:
        """Power on, answering "I copied it" when vSphere asks (a new UUID and MACs);
        returns the question answered, or None."""
        ...

    def power_off(self, vm_moref: str) -> None: ...

    def unregister(self, vm_moref: str) -> None: ...

    def attach_disk(self, disk_path: str, to_vm_moref: str, writable: bool) -> None:
        """Attach an existing disk file to a VM; read-only (non-persistent) unless writable."""
        ...

    def detach_disk(self, disk_path: str, from_vm_moref: str) -> bool:
        """Detach that disk file from the VM (the file is kept); False when it is not attached."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Lun:
    ref: str        # the NAS's id of its extent
    naa: str        # the NAA hosts see it by, lowercase, no prefix


class LunExport(Protocol):
    """How this NAS exposes a zvol over iSCSI."""

    def naa_of(self, zvol: str) -> tuple[str, ...]:
        """The NAA ids (lowercase, no prefix) of the extents that export ``zvol``."""
        ...

    def check(self, field: str, zvol: str) -> None:
        """Refuse (``InvalidInput`` on ``field``), before anything is made, what ``expose``
        could not do for a clone of ``zvol``."""
        ...

    def expose(self, clone: str, like: str) -> Lun:
        """Export the zvol ``clone`` as a new LUN of every target that exports ``like``."""
        ...

    def unexpose(self, ref: str) -> None:
        """Take the LUN away (``ref``: its extent id, or the clone's name when the answer
        of ``expose`` was lost); one that is gone already is not an error."""
        ...


class NoLunExport:
    """A NAS whose iSCSI target this product cannot drive: a restore of a zvol's snapshot is
    refused at its first question, saying ``why``."""

    def __init__(self, why: str) -> None:
        self._why = why

    def _refuse(self, zvol: str) -> NoReturn:
        raise InvalidInput.single("snapshot", f"{zvol} is a zvol (a VMFS datastore's LUN): {self._why}")

    def naa_of(self, zvol: str) -> tuple[str, ...]:
        self._refuse(zvol)

    def check(self, field: str, zvol: str) -> None:
        self._refuse(zvol)

    def expose(self, clone: str, like: str) -> Lun:
        self._refuse(like)

    def unexpose(self, ref: str) -> None:
        """Nothing was exposed."""


class Sharing(Protocol):
    """How this NAS exports a dataset over NFS."""

    def share(self, dataset: str, path: str, clients: tuple[str, ...]) -> str:
        """Export ``path`` (the dataset's mountpoint) to ``clients``; returns the share's id."""
        ...

    def unshare(self, share_id: str) -> None:
        """Stop exporting; a share that is gone already is not an error."""
        ...

    def check(self, field: str, clients: tuple[str, ...]) -> None:
        """Refuse (``InvalidInput`` on ``field``), before anything is made, what ``share``
        could not do for ``clients``."""
        ...
