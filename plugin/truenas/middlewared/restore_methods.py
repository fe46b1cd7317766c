"""The ``vmware_coord.restore*`` methods: restore a VM of a coordinated snapshot (a job,
progress per step), preview it, list, clean up, attach a disk.

A part of ``VMwareCoordService`` (its base), so the methods are ``vmware_coord.<name>`` and
their models ``VMwareCoord<Name>Args/Result``; the work is ``truenas/restores.py``'s. The
restore's errors name the CLI's options (``--vm``); here they name the API's fields.
"""

import contextlib
import errno
from collections.abc import Iterator, Mapping
from typing import Any

from middlewared.api import api_method
from middlewared.service import CallError, InstanceNotFound, ValidationErrors, job

from ...app.restore_steps import RestoreFailed
from ...domain.errors import InvalidInput, NotFound
from ...domain.restore import RestoreRequest
from ...engine.ports import HypervisorFailure, describe
from ...zfs.shell import ShellError
from ..restores import Restores
from ..runtime import ACTIVITY
from .models import (
    ROLE_READ,
    ROLE_WRITE,
    VMwareCoordRestoreArgs,
    VMwareCoordRestoreAttachDiskArgs,
    VMwareCoordRestoreAttachDiskResult,
    VMwareCoordRestoreCleanupArgs,
    VMwareCoordRestoreCleanupResult,
    VMwareCoordRestoreGetArgs,
    VMwareCoordRestoreGetResult,
    VMwareCoordRestoreListArgs,
    VMwareCoordRestoreListResult,
    VMwareCoordRestorePreviewArgs,
    VMwareCoordRestorePreviewResult,
    VMwareCoordRestoreResult,
    VMwareCoordRestoreSnapshotsArgs,
    VMwareCoordRestoreSnapshotsResult,
)

REQUEST = "vmware_coord_restore"
RESTORE_FIELDS = {"snapshot": f"{REQUEST}.snapshot", "--vm": f"{REQUEST}.vm", "--as": f"{REQUEST}.new_name",
                  "--host": f"{REQUEST}.host"}
PREVIEW_FIELDS = {"snapshot": "snapshot", "--host": "host", "dataset": "dataset"}
CLEANUP_FIELDS = {"--force": "force", "restore": "restore_id"}
ATTACH_FIELDS = {"--disk": "disk", "--to": "to", "restore": "restore_id"}


@contextlib.contextmanager
def api_errors(fields: Mapping[str, str], whole: str) -> Iterator[None]:
    """Bad input as ValidationErrors on the API's field (``whole``: the field for a problem
    with the request as a whole); an unknown restore as InstanceNotFound (ENOENT); a failed
    step, an endpoint's or zfs's failure as a CallError saying it (no traceback)."""
    try:
        yield
    except InvalidInput as exc:
        verrors = ValidationErrors()
        for field, message in exc.errors:
            verrors.add(fields.get(field, whole), message)
        raise verrors from None
    except NotFound as exc:
        raise InstanceNotFound(str(exc)) from None
    except RestoreFailed as exc:
        raise CallError(str(exc), errno.EFAULT, exc.result.to_dict()) from None
    except (HypervisorFailure, ShellError, RuntimeError) as exc:
        raise CallError(describe(exc)) from None


class RestoreMethods:
    """Needs ``self.middleware`` and ``self.restores`` (``VMwareCoordService`` sets both)."""

    middleware: Any
    restores: Restores

    def _vmware(self) -> None:
        self.middleware.call_sync("network.general.will_perform_activity", ACTIVITY)

    @api_method(VMwareCoordRestoreSnapshotsArgs, VMwareCoordRestoreSnapshotsResult, roles=ROLE_READ)
    def restore_snapshots(self, dataset: str) -> list[dict[str, Any]]:
        """The snapshots of ``dataset`` a restore can start from (a coordinated run's), newest first."""
        with api_errors(PREVIEW_FIELDS, "dataset"):
            return self.restores.snapshots(dataset)

    @api_method(VMwareCoordRestorePreviewArgs, VMwareCoordRestorePreviewResult, roles=ROLE_READ)
    def restore_preview(self, snapshot: str, host: str | None) -> dict[str, Any]:
        """What a restore from ``snapshot`` would give each VM of its manifest: the VMware
        snapshot it is reverted to (or why none), the default new name, the hosts that can
        mount the clone, what would refuse it. Makes nothing."""
        self._vmware()
        with api_errors(PREVIEW_FIELDS, "snapshot"):
            return self.restores.preview(snapshot, host)

    @api_method(VMwareCoordRestoreArgs, VMwareCoordRestoreResult, roles=ROLE_WRITE,
                audit="VMware coordination restore:")
    @job()   # no lock: each restore has names of its own
    def restore(self, job: Any, request: dict[str, Any]) -> dict[str, Any]:
        """Restore one VM of a coordinated snapshot beside its original, under a new name:
        clone, share, mount, register, revert; powered on only when asked, NICs not connected
        unless asked. Everything is checked before anything is made."""
        self._vmware()
        with api_errors(RESTORE_FIELDS, REQUEST):
            return self.restores.restore(RestoreRequest(**request), job.set_progress).to_dict()

    @api_method(VMwareCoordRestoreListArgs, VMwareCoordRestoreListResult, roles=ROLE_READ)
    def restore_list(self, limit: int) -> list[dict[str, Any]]:
        """Restores, newest first, with their state (restoring, restored, undone, cleaning, cleaned)."""
        return self.restores.list(limit)

    @api_method(VMwareCoordRestoreGetArgs, VMwareCoordRestoreGetResult, roles=ROLE_READ)
    def restore_get(self, restore_id: str) -> dict[str, Any]:
        """One restore: its plan, its steps and what each made."""
        with api_errors(CLEANUP_FIELDS, "restore_id"):
            return self.restores.get(restore_id)

    @api_method(VMwareCoordRestoreCleanupArgs, VMwareCoordRestoreCleanupResult, roles=ROLE_WRITE,
                audit="VMware coordination restore cleanup:")
    @job(lock=lambda args: f"vmware_coord_restore_cleanup:{args[0] if args else ''}")
    def restore_cleanup(self, job: Any, restore_id: str, force: bool) -> dict[str, Any]:
        """Take away everything the restore made, last made first; refused while the copy is
        on, unless ``force`` powers it off."""
        self._vmware()
        with api_errors(CLEANUP_FIELDS, "restore_id"):
            return self.restores.cleanup(restore_id, force, job.set_progress).to_dict()

    @api_method(VMwareCoordRestoreAttachDiskArgs, VMwareCoordRestoreAttachDiskResult, roles=ROLE_WRITE,
                audit="VMware coordination restore attach disk:")
    def restore_attach_disk(self, restore_id: str, disk: int, to: str, writable: bool) -> dict[str, Any]:
        """Attach one disk of the restored copy to another VM on its host, for file-level restore."""
        self._vmware()
        with api_errors(ATTACH_FIELDS, "restore_id"):
            return self.restores.attach_disk(restore_id, disk, to, writable).to_dict()
