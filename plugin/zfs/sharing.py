"""NFS sharing of a dataset through its ``sharenfs`` property (generic ZFS hosts).

OpenZFS exports a dataset whose ``sharenfs`` is set (on Linux through the kernel NFS
server's exports). A TrueNAS edge implements the same ``Sharing`` port with its own
``sharing.nfs.create`` instead. ESXi mounts NFS v3 as root: the export must not squash it.
"""

from __future__ import annotations

from .shell import Shell, ShellError


def sharenfs_value(clients: tuple[str, ...]) -> str:
    """``rw=host1:host2,no_root_squash``; every client when none is named."""
    return f"rw={':'.join(clients)},no_root_squash" if clients else "rw,no_root_squash"


class _NothingToCheck:
    """What the host's exports accept is known only when they are written: nothing to
    refuse beforehand (a share that fails undoes the restore)."""

    def check(self, field: str, clients: tuple[str, ...]) -> None:
        del field, clients


class ZfsSharing(_NothingToCheck):
    """The ``Sharing`` port over ``zfs set sharenfs``; a share's id is its dataset."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def share(self, dataset: str, path: str, clients: tuple[str, ...]) -> str:
        del path   # the dataset's own mountpoint is what ZFS exports
        self.shell.run(["zfs", "set", f"sharenfs={sharenfs_value(clients)}", dataset])
        return dataset

    def unshare(self, share_id: str) -> None:
        try:
            self.shell.run(["zfs", "set", "sharenfs=off", share_id])
        except ShellError as exc:
            if "does not exist" not in exc.stderr:
                raise


class ExportedAlready(_NothingToCheck):
    """The ``Sharing`` port when the NAS's NFS configuration exports the clone's path
    already (an export of a parent directory with ``crossmnt``, or a parent dataset's
    inherited ``sharenfs``): nothing is set, and nothing is taken away."""

    def share(self, dataset: str, path: str, clients: tuple[str, ...]) -> str:
        del dataset, clients
        return path

    def unshare(self, share_id: str) -> None:
        del share_id
