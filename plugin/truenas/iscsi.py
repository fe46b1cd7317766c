"""The restore's ``LunExport`` port through TrueNAS's own iSCSI extents (``iscsi.extent``,
``iscsi.targetextent``).

A zvol's clone becomes a new DISK extent (``disk`` ``zvol/<clone>``, writable: ESXi writes
the VMFS copy's new signature) mapped into every target that maps the original zvol's
extent, at the first free LUN id (``targetextent.create`` picks it: TS-25.10.6
``plugins/iscsi_/target_to_extent.py`` ``validate``). The ESXi hosts that mount the original
datastore are logged in to those targets, so a rescan shows them the clone. The extent is
an ordinary row an admin sees under Shares > iSCSI; its comment names the clone, so one
whose create's answer was lost is still found and removed.

What TrueNAS refuses or does, as read at TS-25.10.6 (``plugins/iscsi_/extents.py``):
``create`` wants the zvol's device to exist (``/dev/zvol/<name>``, made by udev a moment
after ``zfs clone``: a create refused for that is tried again for a while) and a unique
name; ``delete`` of an extent whose target has sessions (every ESXi host using the original
datastore has one) is refused unless forced, and removes the extent's target mappings with
it; the target service is reloaded by both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..app.restore_ports import Lun
from ..domain.errors import InvalidInput
from ..domain.storage import normalize_naa

log = logging.getLogger(__name__)
Call = Callable[..., Any]
COMMENT = "truenas-vmware-coord restore {clone}"
DEVICE_WAIT_S = 30.0


def device_missing(message: str, zvol: str) -> bool:
    """Whether ``iscsi.extent.create`` refused the zvol because its device is not there (yet):
    "Device '/dev/zvol/<zvol>' for volume '<zvol>' does not exist" (``clean_type_and_path``)."""
    return f"'/dev/zvol/{zvol}'" in message and "does not exist" in message


class TrueNasLuns:
    """``LunExport`` over ``iscsi.extent`` and ``iscsi.targetextent``; a LUN's ref is its extent's id."""

    def __init__(self, call: Call, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._call = call
        self._clock = clock
        self._sleep = sleep

    def _extents_of(self, zvol: str) -> list[dict[str, Any]]:
        return [e for e in self._call("iscsi.extent.query", [["type", "=", "DISK"]])
                if e.get("path") == f"zvol/{zvol}"]

    def _targets_of(self, extents: list[dict[str, Any]]) -> list[int]:
        ids = [e["id"] for e in extents]
        return sorted({m["target"] for m in self._call("iscsi.targetextent.query", [["extent", "in", ids]])})

    def naa_of(self, zvol: str) -> tuple[str, ...]:
        return tuple(normalize_naa(e["naa"]) for e in self._extents_of(zvol) if e.get("naa"))

    def check(self, field: str, zvol: str) -> None:
        """Refuse what ``expose`` could not do: no target exports the zvol, the iSCSI service
        is not running (a new LUN would not be served)."""
        if not self._targets_of(self._extents_of(zvol)):
            raise InvalidInput.single(field, (
                f"no iSCSI target of this NAS maps an extent of {zvol}: a restore adds the clone's LUN to "
                "the targets the ESXi hosts reach the original through"))
        try:
            state = self._call("service.query", [["service", "=", "iscsitarget"]], {"get": True})["state"]
        except Exception:  # noqa: BLE001 - unknown: not refused (a rescan that finds nothing undoes it)
            log.warning("the iSCSI service's state could not be read; the restore goes on", exc_info=True)
            return
        if state != "RUNNING":
            raise InvalidInput.single(field, (
                f"the iSCSI service is {str(state).lower()}: a restore exposes its clone as an iSCSI LUN; "
                "start it (System > Services > iSCSI) and try again"))

    def expose(self, clone: str, like: str) -> Lun:
        targets = self._targets_of(self._extents_of(like))
        if not targets:
            raise InvalidInput.single("snapshot", f"no iSCSI target maps an extent of {like}")
        extent = self._create_extent(clone)
        try:
            for target in targets:
                self._call("iscsi.targetextent.create", {"target": target, "extent": extent["id"]})
        except Exception:
            self._delete(extent["id"])   # nothing half made is left: the step failed
            raise
        return Lun(str(extent["id"]), normalize_naa(extent["naa"]))

    def unexpose(self, ref: str) -> None:
        """By extent id; by the clone's name (the comment) when the create's answer was lost."""
        wanted = ["id", "=", int(ref)] if ref.isdigit() else ["comment", "=", COMMENT.format(clone=ref)]
        for extent in self._call("iscsi.extent.query", [wanted]):
            self._delete(extent["id"])

    def _delete(self, extent_id: int) -> None:
        # Forced: the hosts hold sessions to the target for the original's LUN; the copy's was
        # unmounted and detached on the host first. Its target mappings go with it.
        self._call("iscsi.extent.delete", extent_id, False, True)

    def _create_extent(self, clone: str) -> dict[str, Any]:
        device = f"/dev/zvol/{clone}"
        deadline = self._clock() + DEVICE_WAIT_S
        while True:
            try:
                return self._call("iscsi.extent.create", {
                    "name": clone.replace("/", "-")[-64:], "type": "DISK", "disk": f"zvol/{clone}",
                    "ro": False, "comment": COMMENT.format(clone=clone)})
            except Exception as exc:
                # Only the clone's device not there yet is waited for; any other refusal is final.
                if not device_missing(str(exc), clone):
                    raise
                if self._clock() > deadline:
                    raise TimeoutError(f"{device} did not appear within {DEVICE_WAIT_S:.0f} s of the clone") \
                        from None
            self._sleep(0.5)
