"""Restores on TrueNAS: the application's restore use cases with TrueNAS's parts.

The mapped endpoints (their certificates verified, or pinned on first use, as for runs), the
journal on the system dataset, the NAS's addresses from its interfaces and names, the clone
made and destroyed with the ``zfs`` command (as every ZFS write of this plugin:
``snapshots.py`` says why), a filesystem's shared through ``sharing.nfs`` (``sharing.py``), a
zvol's exposed as an iSCSI extent (``iscsi.py``). The
middlewared services only translate arguments and errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..app import restore_preview
from ..app.restore import restore
from ..app.restore_attach import attach_disk
from ..app.restore_cleanup import cleanup, list_restores, reconcile_restores
from ..app.restore_steps import Progress, RestoreParts, RestoreResult
from ..domain.errors import InvalidInput, NotFound
from ..domain.restore import RestoreRequest
from ..vsphere.restore import VsphereRestore
from . import facts
from .iscsi import TrueNasLuns
from .runtime import Runtime
from .sharing import TrueNasSharing

Call = Callable[..., Any]


class Restores:
    def __init__(self, runtime: Runtime, call: Call) -> None:
        self._runtime = runtime
        self._call = call
        self.sharing = TrueNasSharing(call)
        self.luns = TrueNasLuns(call)

    def parts(self) -> RestoreParts:
        """What a restore needs, read from middlewared now (mappings may change at any time)."""
        topo = self._runtime.topology()
        connector = self._runtime.vsphere_connector(topo)

        def open_endpoint(endpoint_id: str) -> VsphereRestore:
            if endpoint_id not in topo.endpoints:
                raise InvalidInput.single("snapshot", f"its VMs are on {endpoint_id}, which no "
                                                      "VMware-Snapshots mapping names now")
            return VsphereRestore(connector.open(endpoint_id))

        return RestoreParts(self._runtime.journal(), self._runtime.shell, self.sharing, open_endpoint,
                            tuple(facts.nas_addresses(self._call)), self.luns)

    def snapshots(self, dataset: str) -> list[dict[str, Any]]:
        return restore_preview.coordinated_snapshots(self.parts(), dataset)

    def preview(self, snapshot: str, host: str | None) -> dict[str, Any]:
        return restore_preview.preview(self.parts(), snapshot, host)

    def restore(self, request: RestoreRequest, progress: Progress) -> RestoreResult:
        return restore(self.parts(), request, progress)

    def list(self, limit: int) -> list[dict[str, Any]]:
        return list_restores(self.parts(), limit)

    def get(self, restore_id: str) -> dict[str, Any]:
        record = self._runtime.journal().restore(restore_id)
        if record is None:
            raise NotFound("restore", restore_id)
        return RestoreResult.of(record).to_dict() | {"started_at": record.started_at,
                                                     "ended_at": record.ended_at}

    def cleanup(self, restore_id: str, force: bool, progress: Progress) -> RestoreResult:
        return cleanup(self._known(restore_id), restore_id, force, progress)

    def attach_disk(self, restore_id: str, disk: int, to_vm: str, writable: bool) -> RestoreResult:
        return attach_disk(self._known(restore_id), restore_id, disk, to_vm, writable)

    def reconcile(self) -> list[dict[str, Any]]:
        return reconcile_restores(self.parts())

    def _known(self, restore_id: str) -> RestoreParts:
        """The parts, once the restore is known to exist ("not found" is not bad input)."""
        if self._runtime.journal().restore(restore_id) is None:
            raise NotFound("restore", restore_id)
        return self.parts()
