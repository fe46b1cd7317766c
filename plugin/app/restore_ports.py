"""What a restore needs from vSphere and from the NAS's sharing, in the product's words.

``vsphere/restore.py`` implements ``RestoreHypervisor`` with pyVmomi; ``zfs/sharing.py``
implements ``Sharing`` with ``zfs set sharenfs`` (a TrueNAS edge can implement it with
``sharing.nfs.create``); ``tests/unit/fake_restore.py`` has in-memory ones. Every method
of ``RestoreHypervisor`` waits for what it starts and raises only the engine's typed
failures (``engine.ports.HypervisorFailure``): the use case never sees a vSphere name.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from ..domain.model import PowerState, SnapshotFacts


@dataclasses.dataclass(frozen=True)
class HostInfo:
    moref: str
    name: str
    connected: bool                       # connected and not in maintenance mode
    nfs_servers: tuple[str, ...] = ()     # remote hosts of the NFS datastores it mounts


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

    def mount_nfs(self, host_moref: str, server: str, export: str, name: str) -> str:
        """Mount ``server:export`` on the host as datastore ``name``; returns its moref."""
        ...

    def unmount(self, host_moref: str, datastore_moref: str) -> None: ...

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
