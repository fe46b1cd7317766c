"""The rig's iSCSI target: the NAS side of the simulator's iSCSI / VMFS double.

The launcher's ``-iscsi DIR`` (tools/vcsim/coord_vmfs.go) stands for the NAS's iSCSI
target as every ESXi host's software initiator discovers it. Each LUN is a file
``DIR/<naa>.json`` with ``{"naa": "<32 lowercase hex>", "device": "/abs/dir"}``; the
directory stands for the zvol. A VMFS volume on it is ``<device>/.vcsim-vmfs.json``
(``{"uuid", "label", "naa"}``, the volume header) plus the directory's other files, so
copying a device directory is what cloning a zvol snapshot is.

The simulator sees a change only when a host rescans (``RescanAllHba``), as ESXi does.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from pyVmomi import vim

from . import vcsim

# TrueNAS gives its extents NAA ids of this form: its IEEE OUI, then a serial.
TRUENAS_NAA_PREFIX = "6589cfc000000"
VMFS_HEADER = ".vcsim-vmfs.json"
_NAA = re.compile(r"^[0-9a-f]{32}$")


def new_naa() -> str:
    """A fresh NAA id of the form TrueNAS gives (no "naa." prefix)."""
    return TRUENAS_NAA_PREFIX + secrets.token_hex(10)[:32 - len(TRUENAS_NAA_PREFIX)]


class IscsiTarget:
    """The target directory; every method takes effect at the hosts' next rescan."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def flags(self) -> tuple[str, ...]:
        """The launcher flags that log every simulated host in to this target."""
        return ("-iscsi", str(self.dir))

    def _file(self, naa: str) -> Path:
        return self.dir / f"{naa}.json"

    def add_lun(self, device: Path | str, naa: str | None = None) -> str:
        """Expose the directory ``device`` as a LUN; returns its naa (without "naa.")."""
        naa = naa or new_naa()
        if not _NAA.match(naa):
            raise ValueError(f"{naa!r} is not 32 lowercase hex digits")
        if naa in self.luns():
            raise ValueError(f"naa {naa} is a LUN already")
        device = Path(device).resolve()
        if not device.is_dir():
            raise ValueError(f"{device} is not a directory")
        # Written whole, then renamed: the simulator never reads half a file.
        tmp = self.dir / f".{naa}.json.tmp"
        tmp.write_text(json.dumps({"naa": naa, "device": str(device)}))
        os.replace(tmp, self._file(naa))
        return naa

    def remove_lun(self, naa: str) -> None:
        """Unmap the LUN (the device directory stays, as the zvol does)."""
        self._file(naa).unlink()

    def luns(self) -> dict[str, Path]:
        """naa -> device directory."""
        out: dict[str, Path] = {}
        for file in sorted(self.dir.glob("*.json")):
            data = json.loads(file.read_text())
            out[data["naa"]] = Path(data["device"])
        return out


def start(target: IscsiTarget, *args: str, **kwargs: Any) -> vcsim.Simulator:
    """Start a simulator whose hosts are logged in to ``target`` (see ``vcsim.start``)."""
    return vcsim.start(*target.flags(), *args, **kwargs)


def read_header(device: Path | str) -> dict[str, str] | None:
    """The VMFS header on a device directory, or None if it holds no VMFS."""
    path = Path(device) / VMFS_HEADER
    return json.loads(path.read_text()) if path.exists() else None


def device_path(naa: str) -> str:
    """The LUN's device path as ESXi names it."""
    return f"/vmfs/devices/disks/naa.{naa}"


def scsi_disk(host: vim.HostSystem, naa: str) -> vim.host.ScsiDisk | None:
    """The host's ScsiDisk for a LUN, as of its last rescan."""
    for lun in host.config.storageDevice.scsiLun:
        if lun.canonicalName == f"naa.{naa}":
            return lun
    return None


def create_vmfs_datastore(host: vim.HostSystem, naa: str, name: str) -> vim.Datastore:
    """Format a LUN the host sees as VMFS and mount it as datastore ``name`` (rig setup)."""
    dss = host.configManager.datastoreSystem
    spec = dss.QueryVmfsDatastoreCreateOptions(devicePath=device_path(naa))[0].spec
    spec.vmfs.volumeName = name
    return dss.CreateVmfsDatastore(spec)
