"""The restore's ``Sharing`` port through TrueNAS's own NFS shares (``sharing.nfs``).

On TrueNAS a share is a ``sharing.nfs`` row, not a ``sharenfs`` property: the NAS writes
``/etc/exports`` from its rows (TS-25.10.6 ``etc_files/exports.mako``) and would not keep an
export it does not know, and the web UI shows the share, so an admin sees what a restore
exported. The share is the clone's mountpoint for the ESXi host alone, root not squashed
(``maproot_user``/``maproot_group`` root: ESXi mounts NFS v3 as root, exports.mako turns a
root mapping into ``no_root_squash``). Its comment names the clone, so a share whose
create's answer was lost is still found and removed.

What ``sharing.nfs.create`` refuses (TS-25.10.6 ``plugins/nfs.py`` ``validate``), checked
before a restore makes anything (``check``): a host name the NAS cannot resolve
(``dnsclient.forward_lookup``), and a share nobody serves because the NFS service is
stopped (it is only reloaded when it runs: ``service/service_mixin.py``). A state that
cannot be read (``service.query`` extends each row with its service object's state) does
not refuse: a mount that then fails takes the restore's clone and share away again.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from ..domain.errors import InvalidInput

log = logging.getLogger(__name__)
Call = Callable[..., Any]
COMMENT = "truenas-vmware-coord restore {dataset}"


class TrueNasSharing:
    """``Sharing`` over ``sharing.nfs.create/query/delete``; a share's id is its row id."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def share(self, dataset: str, path: str, clients: tuple[str, ...]) -> str:
        row = self._call("sharing.nfs.create", {
            "path": path, "hosts": list(clients), "maproot_user": "root", "maproot_group": "root",
            "comment": COMMENT.format(dataset=dataset)})
        return str(row["id"])

    def unshare(self, share_id: str) -> None:
        """By row id; by the clone's name (the dataset) when the create's answer was lost."""
        by_id = share_id.isdigit()
        wanted = ["id", "=", int(share_id)] if by_id else ["comment", "=", COMMENT.format(dataset=share_id)]
        for row in self._call("sharing.nfs.query", [wanted]):
            self._call("sharing.nfs.delete", row["id"])

    def check(self, field: str, clients: tuple[str, ...]) -> None:
        """Refuse, before anything is made, what ``share`` could not do; ``field`` names the host."""
        try:
            state = self._call("service.query", [["service", "=", "nfs"]], {"get": True})["state"]
        except Exception:  # noqa: BLE001 - unknown: not refused (a mount that fails undoes the restore)
            log.warning("the NFS service's state could not be read; the restore goes on", exc_info=True)
            state = None
        if state not in (None, "RUNNING"):
            raise InvalidInput.single(field, (
                f"the NFS service is {state.lower()}: a restore shares its clone over NFS; start it "
                "(System > Services > NFS) and try again"))
        for client in clients:
            if not _is_address(client) and not self._resolves(client):
                raise InvalidInput.single(field, (
                    f"this NAS cannot resolve the host name {client} (an NFS share names its clients): "
                    "add it to the NAS's DNS or its host name database (Network > Global Configuration)"))

    def _resolves(self, name: str) -> bool:
        try:
            return bool(self._call("dnsclient.forward_lookup", {"names": [name]}))
        except Exception:  # noqa: BLE001 - what sharing.nfs does with a failed lookup: unresolved
            return False


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
