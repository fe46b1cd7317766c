"""Which ZFS dataset backs which VMware datastore, from facts about the NAS (pure, no I/O).

The stock plugin trusts the datastore *name* a person typed (and matches it by prefix). Here a
datastore is tied to a dataset by what it really mounts:

- NFS: one of the datastore's remote hosts is an address or host name of this NAS, and its
  remote path is a dataset's mountpoint or a directory below it. The *deepest* mountpoint
  containing the path wins, because that is the file system the files are written to
  (``/mnt/tank/vm/child`` belongs to ``tank/vm/child``, not ``tank/vm``). Paths are compared
  by whole components after normalisation, so ``/mnt/tank/vm`` never matches ``/mnt/tank/vm2``.
- VMFS: an extent's ``naa.`` id equals the NAA of an iSCSI extent that exports a zvol.

Everything is keyed by exact, normalised strings in dicts: matching one datastore costs a
handful of dict lookups (one per path component), whatever the number of datasets.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

from .model import DatastoreFacts

NFS_TYPES = frozenset({"NFS", "NFS41"})
VMFS_TYPES = frozenset({"VMFS"})

# ZFS ``mountpoint`` values that mean "not mounted where a path could reach it".
_UNMOUNTED = frozenset({"", "none", "legacy", "-"})


@dataclass(frozen=True)
class DatasetStorage:
    """How one dataset or zvol of the NAS is reachable by an ESXi host."""

    name: str                          # "tank/vm"
    mountpoint: str | None = None      # mounted datasets only; None for zvols
    iscsi_naa: tuple[str, ...] = ()    # zvols: NAA ids of the iSCSI extents exporting them


@dataclass(frozen=True)
class StorageFacts:
    """What the NAS knows about itself, read once per plan by the adapter.

    ``addresses`` holds every IP address *and* host name (short and fully qualified) an ESXi
    host may have used to mount an NFS export; host names are compared exactly
    (case-insensitively), never resolved, so list every spelling in use.
    """

    addresses: tuple[str, ...] = ()
    datasets: tuple[DatasetStorage, ...] = ()

    @classmethod
    def build(
        cls,
        addresses: Iterable[str] = (),
        mountpoints: MappingABC[str, str | None] | None = None,
        extents: MappingABC[str, Iterable[str]] | None = None,
    ) -> StorageFacts:
        """Facts from plain dicts: dataset -> mountpoint, zvol -> its extents' NAA ids."""
        mountpoints = mountpoints or {}
        extents = extents or {}
        names = sorted(set(mountpoints) | set(extents))
        return cls(
            addresses=tuple(addresses),
            datasets=tuple(
                DatasetStorage(n, mountpoints.get(n), tuple(extents.get(n, ()))) for n in names
            ),
        )


@dataclass(frozen=True)
class StorageIndex:
    """``StorageFacts`` turned into exact-match dicts (build once, look up many times)."""

    addresses: frozenset[str]
    by_mountpoint: MappingABC[str, str]   # normalised mountpoint -> dataset
    by_naa: MappingABC[str, str]          # normalised NAA -> zvol
    datasets: frozenset[str]


@dataclass(frozen=True)
class DatastoreMatch:
    """The answer for one datastore: which datasets of this NAS back it, and why (not).

    ``datasets`` is empty when the datastore is not (provably) on this NAS; ``detail`` then
    says what was compared, for the plan's warnings.
    """

    via: str                           # "nfs" | "vmfs" | "other"
    datasets: tuple[str, ...]          # sorted; several only for VMFS spanning zvols
    detail: str
    export_path: str | None = None     # NFS: normalised remote path, to place files exactly
    foreign_extents: tuple[str, ...] = ()  # VMFS extents that are not zvols of this NAS


def normalize_path(path: str) -> str:
    """An absolute path with no ``//``, ``.``, ``..`` or trailing slash (``/`` stays ``/``)."""
    # normpath collapses inner slashes but keeps a leading "//" (POSIX): give it one "/".
    return posixpath.normpath("/" + path.strip().lstrip("/"))


def normalize_host(host: str) -> str:
    """A comparable spelling of an address or host name.

    Lower case, no IPv6 brackets or zone, IPv4-mapped IPv6 as IPv4, compressed IPv6, no
    trailing dot of a fully qualified name.
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        ip = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return h.rstrip(".")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def normalize_naa(naa: str) -> str:
    """``naa.6589CF…`` (VMware) and ``0x6589cf…`` (TrueNAS iSCSI extent) both -> ``6589cf…``."""
    n = naa.strip().lower()
    return n.removeprefix("naa.").removeprefix("0x")


def index_storage(facts: StorageFacts) -> StorageIndex:
    by_mountpoint: dict[str, str] = {}
    by_naa: dict[str, str] = {}
    # Sorted so that a (misconfigured) duplicate mountpoint or NAA resolves the same way
    # whatever order the facts came in.
    for ds in sorted(facts.datasets, key=lambda d: d.name, reverse=True):
        if ds.mountpoint is not None and ds.mountpoint.strip().lower() not in _UNMOUNTED:
            by_mountpoint[normalize_path(ds.mountpoint)] = ds.name
        for naa in ds.iscsi_naa:
            by_naa[normalize_naa(naa)] = ds.name
    return StorageIndex(
        addresses=frozenset(normalize_host(a) for a in facts.addresses if a.strip()),
        by_mountpoint=by_mountpoint,
        by_naa=by_naa,
        datasets=frozenset(d.name for d in facts.datasets),
    )


def is_within(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it, by whole path components."""
    p, r = normalize_path(path), normalize_path(root)
    return p == r or p.startswith(r.rstrip("/") + "/")


def dataset_for_path(index: StorageIndex, path: str) -> str | None:
    """The dataset whose mountpoint is the deepest one containing ``path``, or None.

    Walks up the path's components: O(depth) dict lookups, independent of the dataset count.
    """
    p = normalize_path(path)
    while True:
        found = index.by_mountpoint.get(p)
        if found is not None:
            return found
        if p == "/":
            return None
        p = posixpath.dirname(p)


ZVOL_DIR = "/dev/zvol/"


def dataset_for_host_path(index: StorageIndex, path: str) -> str | None:
    """The dataset or zvol holding a libvirt guest's disk, from the host path it opens.

    ``/dev/zvol/<pool>/<name>`` is the zvol ``<pool>/<name>`` itself (udev writes a space in a
    zvol's name as ``+``: TS-25.10.6 ``plugins/zfs_/utils.py:94-98``); any other path is a
    file on the dataset with the deepest mountpoint containing it."""
    normalized = normalize_path(path)
    if normalized.startswith(ZVOL_DIR):
        return normalized[len(ZVOL_DIR):].replace("+", " ") or None
    return dataset_for_path(index, normalized)


def dataset_for_file(match: DatastoreMatch, index: StorageIndex, relative: str) -> tuple[str, ...]:
    """The datasets holding a file at ``relative`` (the part after ``[name] ``) on a datastore.

    For NFS the file is placed exactly: an NFS datastore that mounts a parent dataset can
    hold a VM whose directory is a child dataset's mountpoint.
    """
    if match.export_path is not None and match.datasets:
        found = dataset_for_path(index, posixpath.join(match.export_path, relative.lstrip("/")))
        if found is not None:
            return (found,)
    return match.datasets


def match_datastore(ds: DatastoreFacts, index: StorageIndex) -> DatastoreMatch:
    """Which datasets of this NAS back ``ds`` (see the module docstring for the rules)."""
    if ds.type in NFS_TYPES:
        return _match_nfs(ds, index)
    if ds.type in VMFS_TYPES:
        return _match_vmfs(ds, index)
    return DatastoreMatch("other", (), f"{ds.type or 'unknown'} datastore: not NFS or VMFS")


def _match_nfs(ds: DatastoreFacts, index: StorageIndex) -> DatastoreMatch:
    hosts = [h for h in ds.nfs_remote_hosts if h]
    shown = f"{'/'.join(hosts) or '?'}:{ds.nfs_remote_path or '?'}"
    ours = [h for h in hosts if normalize_host(h) in index.addresses]
    if not ours:
        return DatastoreMatch(
            "nfs", (), f"NFS export {shown}: host is not an address of this NAS"
        )
    if not ds.nfs_remote_path:
        return DatastoreMatch("nfs", (), f"NFS export {shown}: no remote path reported")
    export = normalize_path(ds.nfs_remote_path)
    dataset = dataset_for_path(index, export)
    if dataset is None:
        return DatastoreMatch(
            "nfs", (), f"NFS export {shown}: path is under no dataset mountpoint", export
        )
    return DatastoreMatch("nfs", (dataset,), f"NFS export {ours[0]}:{export}", export)


def _match_vmfs(ds: DatastoreFacts, index: StorageIndex) -> DatastoreMatch:
    if not ds.vmfs_extents:
        return DatastoreMatch("vmfs", (), "VMFS datastore: no extents reported")
    found = {e: index.by_naa.get(normalize_naa(e)) for e in ds.vmfs_extents}
    datasets = tuple(sorted({z for z in found.values() if z is not None}))
    foreign = tuple(sorted(e for e, z in found.items() if z is None))
    parts = [f"VMFS extent {e} is iSCSI zvol {z}" for e, z in sorted(found.items()) if z]
    if foreign:
        parts.append(f"extent(s) {', '.join(foreign)} not exported by this NAS")
    return DatastoreMatch("vmfs", datasets, "; ".join(parts), foreign_extents=foreign)
