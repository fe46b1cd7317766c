"""ZFS clones of snapshots for restores, through the Shell port (OpenZFS and zfs-fuse).

A clone is only ever destroyed after its ``origin`` has been read back and found to be the
snapshot it was made from: a restore's clean-up can never destroy anything else.
"""

from __future__ import annotations

import time

from .shell import Shell, ShellError

BUSY_RETRIES = 50


def exists(shell: Shell, name: str) -> bool:
    """Whether a dataset or snapshot of that name exists."""
    try:
        shell.run(["zfs", "list", "-H", "-o", "name", "-t", "all", name])
    except ShellError as exc:
        if "does not exist" in exc.stderr:
            return False
        raise
    return True


def clone(shell: Shell, snapshot: str, target: str) -> None:
    """``zfs clone snapshot target``: the snapshot and its dataset are not touched."""
    shell.run(["zfs", "clone", snapshot, target])


def origin(shell: Shell, dataset: str) -> str | None:
    """The snapshot a clone was made from, None for a dataset that is not a clone or is gone."""
    try:
        out = shell.run(["zfs", "get", "-H", "-o", "value", "origin", dataset])
    except ShellError as exc:
        if "does not exist" in exc.stderr:
            return None
        raise
    value = out.strip()
    return None if value in ("", "-") else value


def kind(shell: Shell, dataset: str) -> str:
    """``filesystem`` or ``volume`` (a zvol)."""
    return shell.run(["zfs", "get", "-H", "-o", "value", "type", dataset]).strip()


def mountpoint(shell: Shell, dataset: str) -> str:
    return shell.run(["zfs", "get", "-H", "-o", "value", "mountpoint", dataset]).strip()


def destroy_clone(shell: Shell, dataset: str, snapshot: str) -> bool:
    """Destroy ``dataset`` if it is the clone of ``snapshot`` (never recursively); False when
    it is gone already. Raises ``ValueError`` when it is something else."""
    found = origin(shell, dataset)
    if found is None:
        if exists(shell, dataset):
            raise ValueError(f"{dataset} is not a clone: it was not made by this restore; left alone")
        return False
    if found != snapshot:
        raise ValueError(f"{dataset} is a clone of {found}, not of {snapshot}; left alone")
    for attempt in range(BUSY_RETRIES):
        try:
            shell.run(["zfs", "destroy", dataset])
            return True
        except ShellError as exc:
            # Just unmounted or unshared, a dataset can be "busy" for a moment (zfs-fuse).
            if "busy" not in exc.stderr or attempt == BUSY_RETRIES - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")
