"""A test double of ZFS volumes (zvols), in front of the real ``zfs`` command.

zfs-fuse implements no zvols (``zfs create -V`` answers "internal error: Function not
implemented"), so the rig cannot snapshot or clone a VMFS datastore's LUN on real ZFS.
``ZvolShell`` is a ``Shell`` that answers the ``zfs`` commands the plugin runs when their
dataset is one of its volumes, and passes every other command to the real shell. A volume's
blocks are a directory (its "device"), the one the rig's iSCSI target serves as a LUN
(``tools/rig/iscsi.py``) and the simulator reads a VMFS volume from; a snapshot is a copy of
it taken at once (ZFS's copy on write, done eagerly), a clone a copy of a snapshot. What it
refuses, it refuses as zfs does: an unknown name ("dataset does not exist"), destroying a
snapshot that has clones, a clone of something that is not a snapshot.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from truenas_vmware_coord.zfs.shell import Shell, ShellError


@dataclasses.dataclass
class Volume:
    name: str                       # "pool/vol" or "pool/vol@snap"
    device: Path
    origin: str = "-"
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))
    props: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "snapshot" if "@" in self.name else "volume"

    def get(self, prop: str) -> str:
        fixed = {"name": self.name, "type": self.kind, "origin": self.origin, "mountpoint": "-",
                 "creation": str(self.created)}
        return fixed.get(prop) or self.props.get(prop, "-")


class ZvolShell:
    """``zfs`` on the volumes under ``root``; everything else through ``real``."""

    def __init__(self, real: Shell, root: Path) -> None:
        self.real = real
        self.root = root
        self.volumes: dict[str, Volume] = {}

    def create(self, name: str) -> Path:
        """``zfs create -V``: an empty volume; returns its device directory."""
        device = self._device(name)
        device.mkdir(parents=True)
        self.volumes[name] = Volume(name, device)
        return device

    def device(self, name: str) -> Path:
        return self.volumes[name].device

    def _device(self, name: str) -> Path:
        return self.root / name.replace("/", "%")

    def run(self, args: list[str]) -> str:
        if args[:2] == ["zfs", "list"] and "-r" not in args and not self._operands(args):
            return self.real.run(args) + self._list_all(args)   # every dataset: theirs and these
        names = [a for a in args[2:] if not a.startswith("-") and ("/" in a or "@" in a)]
        if args[:1] != ["zfs"] or not any(n.partition("@")[0] in self.volumes for n in names):
            return self.real.run(args)
        command = args[1]
        if command == "list":
            return self._list(args)
        if command == "get":
            return self._get(args)
        handler = {"snapshot": self._snapshot, "clone": self._clone, "destroy": self._destroy,
                   "set": self._set, "inherit": self._inherit}.get(command)
        if handler is None:
            raise ShellError(args, 2, f"the zvol double does not answer 'zfs {command}'")
        handler(args)
        return ""

    def _volume(self, args: list[str], name: str) -> Volume:
        if name not in self.volumes:
            raise ShellError(args, 1, f"cannot open '{name}': dataset does not exist")
        return self.volumes[name]

    @staticmethod
    def _operands(args: list[str]) -> list[str]:
        """The arguments that are not options or option values."""
        out, skip = [], False
        for arg in args[2:]:
            if skip:
                skip = False
            elif arg in ("-o", "-t", "-s", "-S", "-d"):
                skip = True
            elif not arg.startswith("-"):
                out.append(arg)
        return out

    def _list(self, args: list[str]) -> str:
        name = args[-1]
        found = [self._volume(args, name)]
        if "-r" in args:
            found += [v for v in self.volumes.values() if v.name.startswith(f"{name}@")]
        return self._rows(args, found)

    def _list_all(self, args: list[str]) -> str:
        return self._rows(args, list(self.volumes.values()))

    @staticmethod
    def _rows(args: list[str], volumes: list[Volume]) -> str:
        kinds = args[args.index("-t") + 1].split(",") if "-t" in args else ["filesystem", "volume"]
        fields = args[args.index("-o") + 1].split(",") if "-o" in args else ["name"]
        return "".join("\t".join(v.get(f) for f in fields) + "\n" for v in volumes
                       if "all" in kinds or v.kind in kinds)

    def _get(self, args: list[str]) -> str:
        at = args.index("-o")
        fields = args[at + 1].split(",")
        rest = [a for a in args[at + 2:] if a not in ("-p", "-r", "-H")]
        props, names = rest[0].split(","), rest[1:]
        mine = [n for n in names if n.partition("@")[0] in self.volumes]
        others = [n for n in names if n not in mine]
        out = self.real.run([*args[:args.index(rest[0]) + 1], *others]) if others else ""
        for name in mine:
            volume = self._volume(args, name)
            for prop in props:
                row = {"name": name, "property": prop, "value": volume.get(prop),
                       "source": "local" if prop in volume.props else "-"}
                out += "\t".join(row[f] for f in fields) + "\n"
        return out

    def _snapshot(self, args: list[str]) -> None:
        full = args[-1]
        volume = self._volume(args, full.partition("@")[0])
        if full in self.volumes:
            raise ShellError(args, 1, f"cannot create snapshot '{full}': dataset already exists")
        device = self._device(full)
        shutil.copytree(volume.device, device, symlinks=True)
        props = dict(args[i + 1].partition("=")[::2] for i, a in enumerate(args) if a == "-o")
        self.volumes[full] = Volume(full, device, props=props)

    def _clone(self, args: list[str]) -> None:
        source, target = args[-2], args[-1]
        snapshot = self._volume(args, source)
        if snapshot.kind != "snapshot":
            raise ShellError(args, 1, f"cannot open '{source}': operation only applies to snapshots")
        if target in self.volumes:
            raise ShellError(args, 1, f"cannot create '{target}': dataset already exists")
        device = self._device(target)
        shutil.copytree(snapshot.device, device, symlinks=True)
        self.volumes[target] = Volume(target, device, origin=source)

    def _destroy(self, args: list[str]) -> None:
        name = args[-1]
        volume = self._volume(args, name)
        if any(v.origin == name for v in self.volumes.values()):
            raise ShellError(args, 1, f"cannot destroy '{name}': snapshot has dependent clones")
        if any(v.name.startswith(f"{name}@") for v in self.volumes.values()):
            raise ShellError(args, 1, f"cannot destroy '{name}': volume has children")
        shutil.rmtree(volume.device)
        del self.volumes[name]

    def _set(self, args: list[str]) -> None:
        key, _, value = args[2].partition("=")
        self._volume(args, args[-1]).props[key] = value

    def _inherit(self, args: list[str]) -> None:
        self._volume(args, args[-1]).props.pop(args[-2], None)
