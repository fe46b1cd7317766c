"""ZFS snapshots and their user properties, through the Shell port.

Works with OpenZFS and with zfs-fuse (one snapshot per command, ``-o`` properties at
creation, ``-r`` for children).
"""

from __future__ import annotations

from .shell import Shell, ShellError

# User properties the engine writes on each snapshot it coordinates.
PROP_RUN = "org.truenas.vmware-coord:run"
PROP_SUMMARY = "org.truenas.vmware-coord:summary"
PROP_VMSYNCED = "freenas:vmsynced"  # the property TrueNAS already shows and replicates


def create_snapshot(shell: Shell, dataset: str, name: str, recursive: bool = False,
                    properties: dict[str, str] | None = None) -> str:
    """``zfs snapshot [-r] [-o k=v]... dataset@name``; returns the full snapshot name."""
    args = ["zfs", "snapshot"]
    if recursive:
        args.append("-r")
    for key, value in sorted((properties or {}).items()):
        args += ["-o", f"{key}={value}"]
    full = f"{dataset}@{name}"
    shell.run([*args, full])
    return full


def set_properties(shell: Shell, name: str, properties: dict[str, str]) -> None:
    """Label an existing snapshot (one ``zfs set`` each: zfs-fuse takes one at a time)."""
    for key, value in sorted(properties.items()):
        shell.run(["zfs", "set", f"{key}={value}", name])


def get_properties(shell: Shell, name: str, properties: list[str]) -> dict[str, str]:
    out = shell.run(["zfs", "get", "-H", "-p", "-o", "property,value", ",".join(properties), name])
    values = {}
    for line in out.splitlines():
        key, _, value = line.partition("\t")
        values[key] = "" if value == "-" else value
    return values


def list_datasets(shell: Shell, root: str | None = None) -> dict[str, str]:
    """Dataset name -> mountpoint ("" when not mounted or a zvol)."""
    args = ["zfs", "list", "-H", "-o", "name,mountpoint", "-t", "filesystem"]
    if root:
        args += ["-r", root]
    out = {}
    for line in shell.run(args).splitlines():
        name, _, mountpoint = line.partition("\t")
        out[name] = mountpoint if mountpoint.startswith("/") else ""
    return out


def list_snapshots(shell: Shell, dataset: str) -> list[str]:
    """Every snapshot of ``dataset`` and its descendants."""
    out = shell.run(["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset])
    return [line for line in out.splitlines() if line]


def creation_times(shell: Shell, snapshots: list[str]) -> dict[str, int]:
    """Each snapshot's creation time (seconds since the epoch); zfs-fuse's ``list`` has no -p."""
    if not snapshots:
        return {}
    out = shell.run(["zfs", "get", "-H", "-p", "-o", "name,value", "creation", *snapshots])
    return {name: int(value) for name, _, value in (line.partition("\t") for line in out.splitlines())
            if value.strip().isdigit()}


def dataset_tree(shell: Shell, dataset: str) -> list[str] | None:
    """``dataset`` and its descendants (file systems and zvols), or None if it does not exist."""
    try:
        out = shell.run(["zfs", "list", "-H", "-o", "name", "-t", "filesystem,volume", "-r", dataset])
    except ShellError as exc:
        if "does not exist" in exc.stderr:
            return None
        raise
    return [line for line in out.splitlines() if line]
