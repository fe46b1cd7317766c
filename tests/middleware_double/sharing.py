"""TrueNAS's NFS sharing API and what it leans on, as the plugin's restores use them.

Mirrors truenas/middleware at TS-25.10.6 (``src/middlewared/middlewared/``):

- ``sharing.nfs`` (``plugins/nfs.py`` ``SharingNFSService``; models in
  ``api/v25_10_0/nfs.py``: ``NfsShareEntry``, ``NfsShareCreate``, ``SharingNFSCreateArgs``
  with one argument ``data``): ``create`` validates (``validate``, :532-658) that the path is
  in a pool (the rig's pool is not under /mnt: here, the mountpoint of a dataset of the
  pool, standing for ``check_path_resides_within_volume``), that each host is an address or
  resolves (``resolve_hostnames`` through ``dnsclient.forward_lookup``, "Unable to resolve
  host"), that no other share exports the same path to the same host
  (``validate_share_path``: "Export conflict"), that map users and groups exist; then stores
  the row and reloads NFS only when the service runs (``service/service_mixin.py``).
  ``delete`` of an unknown id is ``InstanceNotFound`` (``get_instance``), ``query`` filters.
  The rig has no NFS server (the simulator reads the clone's directory itself): a reload is
  only counted.
- ``dnsclient.forward_lookup`` (``plugins/dns_client.py``: raises when a name does not
  resolve): the NAS's DNS and host name database stand in as a dict the test fills.
- ``service.query`` (``plugins/service.py``): the ``nfs`` service's state.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
from typing import Any, Literal

from .datastore import filter_list
from .framework import BaseModel, CallError, InstanceNotFound, ValidationErrors, accept_params

USERS, GROUPS = {"root", "nobody"}, {"root", "wheel", "nogroup"}   # the NAS's local accounts here


class NfsShareCreate(BaseModel):
    path: str
    aliases: list[str] = []
    comment: str = ""
    networks: list[str] = []
    hosts: list[str] = []
    ro: bool = False
    maproot_user: str | None = None
    maproot_group: str | None = None
    mapall_user: str | None = None
    mapall_group: str | None = None
    security: list[Literal["SYS", "KRB5", "KRB5I", "KRB5P"]] = []
    enabled: bool = True
    expose_snapshots: bool = False


class SharingNFSCreateArgs(BaseModel):
    data: NfsShareCreate


class SharingNfs:
    SCHEMA = "sharingnfs_create"

    def __init__(self, dns: dict[str, str], mountpoints: Any) -> None:
        """``dns``: name -> address, what the NAS resolves; ``mountpoints()``: its datasets' mountpoints."""
        self.rows: list[dict[str, Any]] = []
        self.reloads = 0
        self.nfs_state = "RUNNING"
        self._dns = dns
        self._mountpoints = mountpoints
        self._ids = itertools.count(1)

    def create(self, *args: Any) -> dict[str, Any]:
        [data] = accept_params(SharingNFSCreateArgs, list(args))
        verrors = ValidationErrors()
        path, hosts = data["path"], data["hosts"]
        for host in hosts:
            if any(c in host for c in " '\""):
                verrors.add(f"{self.SCHEMA}.hosts", f"Cannot contain spaces or quotes: {host!r}")
        verrors.check()
        if not os.path.isdir(path) or os.path.realpath(path) not in self._mountpoints():
            verrors.add(f"{self.SCHEMA}.path", "The path must reside within a pool mount point")
        for host in hosts:
            if not self._resolvable(host):
                verrors.add(f"{self.SCHEMA}.hosts", f"Unable to resolve host '{host}'")
        verrors.check()
        for other in self.rows:
            common = (set(hosts) & set(other["hosts"])) or (not hosts and not other["hosts"])
            if other["path"] == path and common:
                verrors.add(f"{self.SCHEMA}.path", "ERROR - Export conflict. Another share with the same "
                                                   f"path exports {path} for {common}")
        for kind in ("maproot", "mapall"):
            user, group = data[f"{kind}_user"], data[f"{kind}_group"]
            if group and not user:
                verrors.add(f"{self.SCHEMA}.{kind}_user",
                            "This field is required when map group is specified")
            elif user and user not in USERS:
                verrors.add(f"{self.SCHEMA}.{kind}_user", f"User not found: {user}")
            if user and group and group not in GROUPS:
                verrors.add(f"{self.SCHEMA}.{kind}_group", f"Group not found: {group}")
        verrors.check()
        row = data | {"id": next(self._ids), "locked": None}
        self.rows.append(row)
        if self.nfs_state == "RUNNING":
            self.reloads += 1
        return dict(row)

    def query(self, filters: list | None = None, options: dict | None = None) -> Any:
        return filter_list([dict(r) for r in self.rows], filters, options)

    def delete(self, id_: int) -> bool:
        row = next((r for r in self.rows if r["id"] == id_), None)
        if row is None:
            raise InstanceNotFound(f"SharingNFS {id_} does not exist")
        self.rows.remove(row)
        if self.nfs_state == "RUNNING":
            self.reloads += 1
        return True

    def services(self, filters: list | None = None, options: dict | None = None) -> Any:
        """``service.query``."""
        return filter_list([{"id": 1, "service": "nfs", "enable": True, "state": self.nfs_state, "pids": []}],
                           filters, options)

    def _resolvable(self, host: str) -> bool:
        """As TrueNAS's DNS client answers: an address literal is itself, a name is looked up."""
        with contextlib.suppress(ValueError):
            return bool(ipaddress.ip_address(host))
        return host in self._dns

    def forward_lookup(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """``dnsclient.forward_lookup``: raises when no name resolves (``raise_error`` HOST_FAILURE)."""
        found = [{"name": n, "type": "A", "address": self._dns[n]} for n in data["names"] if n in self._dns]
        if not found:
            raise CallError(f"The DNS query name does not exist: {', '.join(data['names'])}")
        return found
