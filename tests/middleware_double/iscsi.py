"""TrueNAS's iSCSI extent API as the plugin's VMFS restores use it.

Mirrors truenas/middleware at TS-25.10.6 (``src/middlewared/middlewared/``):

- ``iscsi.extent`` (``plugins/iscsi_/extents.py``; models in ``api/v25_10_0/iscsi_extent.py``:
  ``IscsiExtentCreate`` without ``naa``, which ``create`` makes: ``0x6589cfc000000`` and 19
  hex digits, ``extent_naa``). ``create`` validates (``clean_name``, ``clean_type_and_path``):
  a unique name without double quotes, a DISK ``disk`` that starts with ``zvol/`` and whose
  device ``/dev/zvol/<name>`` exists, not used by another extent; then stores the row (its
  ``path`` is the ``disk``). ``delete(id, remove, force)``: an extent whose target has active
  sessions is a ``CallError`` ("Associated target(s) … in use.") unless forced; its target
  mappings are deleted with it; the target service is reloaded.
- ``iscsi.targetextent`` (``plugins/iscsi_/target_to_extent.py``): ``create`` takes the first
  free LUN id of the target when none is given (``validate``), refuses an extent mapped twice
  into one target; the target service is reloaded.
- ``service.query`` of ``iscsitarget`` (``plugins/service.py``).

The rig has no iSCSI target: each reload of the service hands the extents mapped into a
target to ``on_reload`` (a test publishes them as LUNs the simulator's hosts discover,
``tools/rig/iscsi.py``). A zvol's device exists when ``devices()`` names the zvol (zfs-fuse
has no zvols: a test's zvol double, tools/rig/zvol.py, says which exist).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any, Literal

from .datastore import filter_list
from .framework import BaseModel, CallError, InstanceNotFound, ValidationErrors, accept_params


class IscsiExtentCreate(BaseModel):
    name: str
    type: Literal["DISK", "FILE"] = "DISK"
    disk: str | None = None
    serial: str | None = None
    path: str | None = None
    filesize: str | int = "0"
    blocksize: Literal[512, 1024, 2048, 4096] = 512
    pblocksize: bool = False
    avail_threshold: int | None = None
    comment: str = ""
    insecure_tpc: bool = True
    xen: bool = False
    rpm: str = "SSD"
    ro: bool = False
    enabled: bool = True
    product_id: str | None = None


class ExtentCreateArgs(BaseModel):
    iscsi_extent_create: IscsiExtentCreate


class TargetExtentCreate(BaseModel):
    target: int
    lunid: int | None = None
    extent: int


class TargetExtentCreateArgs(BaseModel):
    iscsi_target_to_extent_create: TargetExtentCreate


class Iscsi:
    """Extents, target mappings and the target service's state; ``sessions``: the targets
    an initiator is logged in to (the ESXi hosts, in the rig)."""

    def __init__(self, devices: Callable[[], set[str]],
                 on_reload: Callable[[list[dict[str, Any]]], None] = lambda _luns: None) -> None:
        self.extents: list[dict[str, Any]] = []
        self.mappings: list[dict[str, Any]] = []
        self.targets = [{"id": 1, "name": "vmware"}]
        self.sessions: set[int] = {1}
        self.state = "RUNNING"
        self.devices = devices
        self.on_reload = on_reload
        self._extent_ids = itertools.count(1)
        self._mapping_ids = itertools.count(1)

    # --- iscsi.extent ------------------------------------------------------------------

    def extent_create(self, *args: Any) -> dict[str, Any]:
        [data] = accept_params(ExtentCreateArgs, list(args))
        schema, verrors = "iscsi_extent_create", ValidationErrors()
        if '"' in data["name"]:
            verrors.add(f"{schema}.name", "Double quotes are not allowed")
        if any(e["name"] == data["name"] for e in self.extents):
            verrors.add(f"{schema}.name", "Extent name must be unique")
        disk = data["disk"]
        if data["type"] == "DISK":
            if not disk:
                verrors.add(f"{schema}.disk", "This field is required")
                verrors.check()
            if not disk.startswith("zvol/"):
                verrors.add(f"{schema}.disk", 'Disk name must start with "zvol/"')
                verrors.check()
            zvol = disk[len("zvol/"):]
            if zvol not in self.devices():
                verrors.add(f"{schema}.disk", f"Device '/dev/{disk}' for volume '{zvol}' does not exist")
            used = [e for e in self.extents if e["path"] == disk]
            if used:
                verrors.add(f"{schema}.disk", f"Disk currently in use by extent {used[0]['name']}")
        verrors.check()
        naa = "0x6589cfc000000" + hashlib.sha256(str(uuid.uuid4()).encode()).hexdigest()[0:19]
        row = data | {"id": next(self._extent_ids), "naa": naa, "path": disk, "vendor": "TrueNAS",
                      "locked": False}
        self.extents.append(row)
        return dict(row)

    def extent_query(self, filters: list | None = None, options: dict | None = None) -> Any:
        return filter_list([dict(e) for e in self.extents], filters, options)

    def extent_delete(self, id_: int, remove: bool = False, force: bool = False) -> bool:
        extent = self._get(self.extents, id_, "iSCSI extent")
        mapped = [m for m in self.mappings if m["extent"] == id_]
        busy = sorted({self._target_name(m["target"]) for m in mapped if m["target"] in self.sessions})
        if busy and not force:
            verb = "is" if len(busy) == 1 else "are"
            raise CallError(f"Associated target(s) {','.join(busy)} {verb} in use.")
        for mapping in mapped:
            self.mappings.remove(mapping)
        self.extents.remove(extent)
        self._reload()
        return True

    # --- iscsi.targetextent --------------------------------------------------------------

    def mapping_create(self, *args: Any) -> dict[str, Any]:
        [data] = accept_params(TargetExtentCreateArgs, list(args))
        schema, verrors = "iscsi_targetextent_create", ValidationErrors()
        if not any(t["id"] == data["target"] for t in self.targets):
            verrors.add(f"{schema}.target", "Target not found")
        if not any(e["id"] == data["extent"] for e in self.extents):
            verrors.add(f"{schema}.extent", "Extent not found")
        if any(m["target"] == data["target"] and m["extent"] == data["extent"] for m in self.mappings):
            verrors.add(f"{schema}.target", "Extent is already in this target.")
        verrors.check()
        if data["lunid"] is None:
            taken = {m["lunid"] for m in self.mappings if m["target"] == data["target"]}
            data["lunid"] = next(n for n in itertools.count() if n not in taken)
        row = data | {"id": next(self._mapping_ids)}
        self.mappings.append(row)
        self._reload()
        return dict(row)

    def mapping_query(self, filters: list | None = None, options: dict | None = None) -> Any:
        return filter_list([dict(m) for m in self.mappings], filters, options)

    def services(self) -> list[dict[str, Any]]:
        """The ``iscsitarget`` row of ``service.query``."""
        return [{"id": 2, "service": "iscsitarget", "enable": True, "state": self.state, "pids": []}]

    def _reload(self) -> None:
        if self.state == "RUNNING":
            by_id = {e["id"]: e for e in self.extents}
            self.on_reload([by_id[m["extent"]] | {"target": m["target"], "lunid": m["lunid"]}
                             for m in self.mappings])

    def _target_name(self, target_id: int) -> str:
        return next(t["name"] for t in self.targets if t["id"] == target_id)

    @staticmethod
    def _get(rows: list[dict[str, Any]], id_: int, kind: str) -> dict[str, Any]:
        row = next((r for r in rows if r["id"] == id_), None)
        if row is None:
            raise InstanceNotFound(f"{kind} {id_} does not exist")
        return row
