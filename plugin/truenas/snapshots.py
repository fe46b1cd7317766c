"""The NAS's ZFS snapshots as the plugin finds and labels them, through the ``zfs`` command.

Not through middlewared's API, on purpose: 26.0 removed ``zfs.snapshot.*`` and its
``pool.snapshot.update`` is a stub that sets nothing (truenas/middleware TS-26.0.0-BETA.3,
``plugins/pool_/snapshot.py:366-370``; master :382-387), so no release-independent API can
label a snapshot that already exists. The ``zfs`` command reads and sets user properties
the same way on every release (and on zfs-fuse in the tests).

Which snapshot a periodic task made is known exactly: zettarepl names it by the task's
naming schema (``strftime`` codes) and it was created after the begin hook ran.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from ..zfs import snapshot as zfs
from ..zfs.shell import Shell, ShellError
from ..zfs.snapshot import PROP_RUN, PROP_VMSYNCED


def created_since(shell: Shell, dataset: str, since: float) -> list[tuple[str, float]]:
    """Snapshots of ``dataset`` itself created at or after ``since``: (name, creation), oldest first."""
    names = [n for n in zfs.list_snapshots(shell, dataset) if n.partition("@")[0] == dataset]
    times = zfs.creation_times(shell, names)
    return sorted(((n, t) for n, t in times.items() if t >= int(since)), key=lambda item: item[1])


def matches_schema(snapshot: str, naming_schema: str) -> bool:
    """Whether the snapshot's name is one zettarepl makes with ``naming_schema``."""
    try:
        datetime.datetime.strptime(snapshot.partition("@")[2], naming_schema)
    except ValueError:
        return False
    return True


def task_snapshot(shell: Shell, dataset: str, naming_schema: str | None, since: float) -> str | None:
    """The snapshot a periodic task made since ``since``: the newest whose name follows the
    task's naming schema (a manual snapshot taken meanwhile does not), or, without a
    schema (a manual snapshot), the newest."""
    fresh = [n for n, _ in created_since(shell, dataset, since)
             if naming_schema is None or matches_schema(n, naming_schema)]
    return fresh[-1] if fresh else None


def family(shell: Shell, snapshot: str, exclude: Iterable[str] = ()) -> list[str]:
    """A recursive snapshot and its children's snapshots of the same name (minus excluded)."""
    dataset, _, name = snapshot.partition("@")
    excluded = tuple(exclude)
    found = [s for s in zfs.list_snapshots(shell, dataset) if s.partition("@")[2] == name]
    return [s for s in found if not any(s.partition("@")[0] == e or s.startswith(f"{e}/") for e in excluded)]


def label(shell: Shell, snapshot: str, properties: dict[str, str]) -> None:
    zfs.set_properties(shell, snapshot, properties)


def run_of(shell: Shell, snapshot: str) -> str | None:
    """The run id a snapshot carries (one replicated here, or labelled by another journal)."""
    try:
        value = zfs.get_properties(shell, snapshot, [PROP_RUN]).get(PROP_RUN)
    except ShellError:
        return None
    return value or None


def empty(shell: Shell, snapshot: str) -> bool | None:
    """Whether the snapshot holds nothing its predecessor does not: zettarepl's "empty"
    (``written`` == 0, zettarepl ``snapshot/empty.py``). A ZFS without ``written`` (zfs-fuse)
    is asked whether ``referenced`` changed since the previous snapshot. None: unknown."""
    try:
        return int(zfs.get_properties(shell, snapshot, ["written"])["written"]) == 0
    except (ShellError, KeyError, ValueError):
        pass
    dataset = snapshot.partition("@")[0]
    try:
        older = [s for s in zfs.list_snapshots(shell, dataset) if s.partition("@")[0] == dataset]
        if snapshot not in older or older.index(snapshot) == 0:
            return None
        previous = older[older.index(snapshot) - 1]
        sizes = [zfs.get_properties(shell, s, ["referenced"]).get("referenced") for s in (previous, snapshot)]
    except ShellError:
        return None
    return sizes[0] == sizes[1]


def dataset_flags(shell: Shell, mapped: Iterable[str]) -> list[str]:
    """Datasets with a local ``freenas:vmsynced``: stock TrueNAS's manual snapshots with
    VMware sync put it on the dataset, so every later snapshot of it inherits that value.
    Looked for where stock could have put it: the mapped datasets, their parents (a
    recursive snapshot of a parent) and their children."""
    wanted = sorted(set(mapped))
    pools = sorted({d.split("/")[0] for d in wanted})
    if not pools:
        return []
    out = shell.run(["zfs", "get", "-H", "-r", "-o", "name,source", PROP_VMSYNCED, *pools])

    def related(name: str) -> bool:
        return any(name == d or d.startswith(f"{name}/") or name.startswith(f"{d}/") for d in wanted)

    return sorted(name for name, _, source in (line.partition("\t") for line in out.splitlines())
                  if "@" not in name and source.strip() == "local" and related(name))


def clear_dataset_flag(shell: Shell, dataset: str) -> None:
    shell.run(["zfs", "inherit", PROP_VMSYNCED, dataset])
