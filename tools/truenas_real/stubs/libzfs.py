"""A documented double of ``libzfs`` (truenas/py-libzfs, Cython over OpenZFS's libzfs), driving
the ``zfs`` command of zfs-fuse so middlewared's snapshots are real.

What is modelled is what middlewared 25.10 calls on the paths this suite runs (read in
truenas/middleware TS-25.10.6, ``src/middlewared/middlewared/``):

- ``plugins/zfs_/snapshot.py``: ``ZFS()`` as a context manager; ``get_dataset(name)`` and
  its ``snapshot(name, recursive=, fsopts=)`` (``create``) and ``properties[key] =
  ZFSUserProperty(value)`` (the ``freenas:vmsynced`` write on the *dataset*);
  ``snapshots_serialized(props=, holds=, mounted=, datasets=, recursive=, min_txg=,
  max_txg=)`` (``query``); ``get_snapshot(name)`` with ``properties``,
  ``update_properties`` (``update`` through ``plugins/zfs_/dataset.py``
  ``update_zfs_object_props``) and ``delete(defer=, recursive=)``; ``ZFSException`` with
  ``code`` and ``Error.NOENT``.
- ``plugins/zfs_/validation_utils.py``: ``validate_snapshot_name`` / ``validate_dataset_name``
  / ``validate_pool_name`` (the API models call them).

The serialized shape follows ``api/v25_10_5/pool_snapshot.py`` ``PoolSnapshotEntry``: ``id,
name, pool, type="SNAPSHOT", snapshot_name, dataset, createtxg (str), properties{name: {value,
rawvalue, source, parsed}}`` (+ ``holds`` when asked). zfs-fuse (pool version 23) has no
``createtxg`` property: it is the snapshot's position in ``zfs list -t snapshot`` order,
which ZFS lists by dataset and creation, so it grows within a dataset as a txg does.
Anything else (``ZFSVdev``, pool import, quotas...) is a permissive placeholder.
"""

from __future__ import annotations

import enum
import re
import subprocess
from typing import Any

from truenas_real_stubs._auto import AutoModule, placeholder

STANDS_IN_FOR = "py-libzfs (libzfs)"


class Error(enum.IntEnum):
    # The libzfs error numbers middlewared compares with (zfs_error_t).
    SUCCESS = 0
    NOMEM = 2000
    BADPROP = 2001
    PROPREADONLY = 2002
    PROPTYPE = 2003
    PROPNONINHERIT = 2004
    PROPSPACE = 2005
    BADTYPE = 2006
    BUSY = 2007
    EXISTS = 2008
    NOENT = 2009
    BADSTREAM = 2010
    DSREADONLY = 2011
    VOLTOOBIG = 2012
    INVALIDNAME = 2013
    BADRESTORE = 2014
    BADBACKUP = 2015
    BADTARGET = 2016
    NODEVICE = 2017
    BADDEV = 2018
    NOREPLICAS = 2019
    RESILVERING = 2020
    BADVERSION = 2021
    POOLUNAVAIL = 2022
    DEVOVERFLOW = 2023
    BADPATH = 2024
    CROSSTARGET = 2025
    ZONED = 2026
    MOUNTFAILED = 2027
    UMOUNTFAILED = 2028
    UNSHAREFAILED = 2029
    SHAREFAILED = 2030
    PERM = 2031
    NOSPC = 2032
    FAULT = 2033
    IO = 2034
    INTR = 2035
    ISSPARE = 2036
    INVALCONFIG = 2037
    RECURSIVE = 2038
    NOHISTORY = 2039
    POOLPROPS = 2040
    POOL_NOTSUP = 2041
    POOL_INVALARG = 2042
    NAMETOOLONG = 2043
    OPENFAILED = 2044
    NOCAP = 2045
    LABELFAILED = 2046
    BADWHO = 2047
    BADPERM = 2048
    BADPERMSET = 2049
    NODELEGATION = 2050
    UNSHARESMBFAILED = 2052
    SHARESMBFAILED = 2053
    BADCACHE = 2054
    ISL2CACHE = 2055
    VDEVNOTSUP = 2056
    NOTSUP = 2057
    ACTIVE_SPARE = 2058
    UNPLAYED_LOGS = 2059
    REFTAG_RELE = 2060
    REFTAG_HOLD = 2061
    TAGTOOLONG = 2062
    PIPEFAILED = 2063
    THREADCREATEFAILED = 2064
    POSTSPLIT_ONLINE = 2065
    SCRUBBING = 2066
    NO_SCRUB = 2067
    DIFF = 2068
    DIFFDATA = 2069
    POOLREADONLY = 2070
    UNKNOWN = 2071


class ZFSType(enum.IntEnum):
    FILESYSTEM = 1
    SNAPSHOT = 2
    VOLUME = 4
    POOL = 8
    BOOKMARK = 16


DatasetType = ZFSType


class PropertySource(enum.IntEnum):
    NONE = 1
    DEFAULT = 2
    TEMPORARY = 4
    LOCAL = 8
    INHERITED = 16
    RECEIVED = 32


class ZFSException(RuntimeError):  # noqa: N818 - py-libzfs's name
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in middlewared's process-pool workers and pickled back to the parent.
        return (type(self), (self.code, self.message))


class ZFSInvalidCachefileException(ZFSException):
    pass


class ZFSUserProperty:
    def __init__(self, value: str) -> None:
        self.value = value
        self.rawvalue = value


def _zfs(*args: str) -> str:
    proc = subprocess.run(["zfs", *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        message = proc.stderr.strip() or f"zfs {args[0]} failed"
        code = (
            Error.NOENT
            if "does not exist" in message
            else (Error.EXISTS if "already exists" in message else Error.UNKNOWN)
        )
        raise ZFSException(code, message)
    return proc.stdout


def _source(column: str) -> str:
    if column == "-":
        return "NONE"
    if column.startswith("inherited"):
        return "INHERITED"
    return column.upper()  # default, local, temporary, received


def _parsed(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in ("on", "yes"):
        return True
    if value in ("off", "no"):
        return False
    return value


def _properties(names: list[str], wanted: list[str] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """``zfs get -p`` and ``zfs get`` (for the human value) of ``names``, by name."""
    if not names:
        return {}
    props = ",".join(wanted) if wanted else "all"
    raw = _zfs("get", "-H", "-p", "-o", "name,property,value,source", props, *names)
    human = _zfs("get", "-H", "-o", "name,property,value", props, *names)
    values = {tuple(line.split("\t")[:2]): line.split("\t")[2] for line in human.splitlines() if line}
    result: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    for line in raw.splitlines():
        if not line:
            continue
        name, prop, rawvalue, source = line.split("\t")
        value = values.get((name, prop), rawvalue)
        result.setdefault(name, {})[prop] = {
            "value": value,
            "rawvalue": rawvalue,
            "source": _source(source),
            "parsed": _parsed(rawvalue),
        }
    return result


class ZFSProperty:
    """One property of a dataset or snapshot (``.value``, ``.rawvalue``, ``.source``, ``.parsed``)."""

    def __init__(self, owner: str, name: str, fields: dict[str, Any]) -> None:
        self.owner, self.name = owner, name
        self.value, self.rawvalue, self.parsed = fields["value"], fields["rawvalue"], fields["parsed"]
        self.source = getattr(PropertySource, fields["source"])

    def inherit(self, recursive: bool = False, received: bool = False) -> None:
        _zfs("inherit", *(["-r"] if recursive else []), self.name, self.owner)


class _Properties(dict):
    """A resource's properties; assigning a ZFSUserProperty sets it with ``zfs set``."""

    def __init__(self, owner: str) -> None:
        super().__init__({k: ZFSProperty(owner, k, v) for k, v in _properties([owner], None)[owner].items()})
        self.owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        raw = value.value if isinstance(value, ZFSUserProperty | ZFSProperty) else str(value)
        _zfs("set", f"{key}={raw}", self.owner)
        super().__setitem__(
            key, ZFSProperty(self.owner, key, _properties([self.owner], [key])[self.owner][key])
        )


class _Resource:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def properties(self) -> _Properties:
        return _Properties(self.name)

    def update_properties(self, properties: dict[str, dict[str, Any]]) -> None:
        """``{key: {"value": v} | {"parsed": v} | {"source": "INHERIT"}}`` (update_zfs_object_props)."""
        for key, change in properties.items():
            if change.get("source") == "INHERIT":
                _zfs("inherit", key, self.name)
            else:
                value = change["value"] if "value" in change else change["parsed"]
                if isinstance(value, bool):
                    value = "on" if value else "off"
                _zfs("set", f"{key}={value}", self.name)

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}


class ZFSDataset(_Resource):
    @property
    def type(self) -> ZFSType:
        kind = _zfs("get", "-H", "-o", "value", "type", self.name).strip()
        return ZFSType.VOLUME if kind == "volume" else ZFSType.FILESYSTEM

    @property
    def pool(self) -> Any:
        return placeholder("libzfs.ZFSPool")()

    def snapshot(self, name: str, fsopts: dict[str, Any] | None = None, recursive: bool = False) -> None:
        options = [a for k, v in sorted((fsopts or {}).items()) for a in ("-o", f"{k}={v}")]
        _zfs("snapshot", *(["-r"] if recursive else []), *options, name)

    @property
    def snapshots(self) -> list[ZFSSnapshot]:
        names = _zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", "-d", "1", self.name).split()
        return [ZFSSnapshot(n) for n in names if n.split("@")[0] == self.name]


class ZFSSnapshot(_Resource):
    @property
    def snapshot_name(self) -> str:
        return self.name.split("@", 1)[1]

    @property
    def holds(self) -> dict[str, int]:
        return {}  # zfs-fuse's `zfs holds` needs pyzfs, which Debian does not ship

    def delete(self, defer: bool = False, recursive: bool = False) -> None:
        _zfs("destroy", *(["-d"] if defer else []), *(["-r"] if recursive else []), self.name)

    def hold(self, tag: str, recursive: bool = False) -> None:
        _zfs("hold", *(["-r"] if recursive else []), tag, self.name)

    def release(self, tag: str, recursive: bool = False) -> None:
        _zfs("release", *(["-r"] if recursive else []), tag, self.name)

    def rename(self, new_name: str) -> None:
        _zfs("rename", self.name, new_name)


class ZFS:
    """``with libzfs.ZFS() as zfs:``: one handle per block, as middlewared uses it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> ZFS:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def get_dataset(self, name: str) -> ZFSDataset:
        _zfs("list", "-H", "-o", "name", name)
        return ZFSDataset(name)

    def get_object(self, name: str) -> ZFSDataset | ZFSSnapshot:
        return self.get_snapshot(name) if "@" in name else self.get_dataset(name)

    def get_snapshot(self, name: str) -> ZFSSnapshot:
        _zfs("list", "-H", "-t", "snapshot", "-o", "name", name)
        return ZFSSnapshot(name)

    def snapshots_serialized(
        self,
        props: list[str] | None = None,
        holds: bool = False,
        mounted: bool = False,
        datasets: list[str] | None = None,
        recursive: bool = True,
        min_txg: int = 0,
        max_txg: int = 0,
        **_: Any,
    ) -> list[dict[str, Any]]:
        everything = [n for n in _zfs("list", "-H", "-t", "snapshot", "-o", "name").split() if n]
        order = {name: txg for txg, name in enumerate(everything, start=1)}
        names = everything
        if datasets is not None:

            def wanted(snap: str) -> bool:
                ds = snap.split("@")[0]
                return any(snap == d or ds == d or (recursive and ds.startswith(f"{d}/")) for d in datasets)

            names = [n for n in everything if wanted(n)]
        names = [n for n in names if order[n] >= min_txg and (not max_txg or order[n] <= max_txg)]
        only_name = props == ["name"]
        properties = {} if only_name else _properties(names, props or None)
        result = []
        for name in names:
            dataset, _, snap = name.partition("@")
            entry: dict[str, Any] = {
                "id": name,
                "name": name,
                "pool": dataset.split("/")[0],
                "type": "SNAPSHOT",
                "snapshot_name": snap,
                "dataset": dataset,
                "createtxg": str(order[name]),
            }
            if not only_name:
                entry["properties"] = properties.get(name, {})
            if holds:
                entry["holds"] = {}
            result.append(entry)
        return result

    def datasets_serialized(
        self,
        datasets: list[str] | None = None,
        props: list[str] | None = None,
        user_props: bool = True,
        retrieve_children: bool = True,
        **_: Any,
    ) -> list[dict[str, Any]]:
        names = [
            n
            for n in _zfs(
                "list", "-H", "-o", "name", *(["-r"] if retrieve_children else []), *(datasets or [])
            ).split()
            if n
        ]
        properties = _properties(names, props or None)
        return [
            {
                "id": n,
                "name": n,
                "pool": n.split("/")[0],
                "type": "FILESYSTEM",
                "properties": properties.get(n, {}),
            }
            for n in names
        ]


_NAME = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"


def validate_pool_name(name: str) -> bool:
    return bool(re.fullmatch(_NAME, name)) and not re.match(r"^(mirror|raidz|draid|spare|log)", name)


def validate_dataset_name(name: str) -> bool:
    return bool(re.fullmatch(rf"{_NAME}(/[A-Za-z0-9_.: -]+)*", name)) and len(name) < 256


def validate_snapshot_name(name: str) -> bool:
    dataset, sep, snap = name.partition("@")
    return bool(sep) and validate_dataset_name(dataset) and bool(re.fullmatch(r"[A-Za-z0-9_.:-]+", snap))


_rest = AutoModule(__name__, "libzfs placeholders")


def __getattr__(name: str) -> Any:
    # ZFSVdev, ZFSUserQuota, property_sets, ScanState, FeatureState...: not on this suite's path.
    return getattr(_rest, name)
