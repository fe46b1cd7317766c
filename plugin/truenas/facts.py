"""The engine's inputs, read from TrueNAS: mappings, endpoints, passwords, storage facts.

The stock ``storage_vmwareplugin`` rows (``vmware.query``: host, user, decrypted password,
datastore, dataset) are the mappings, unchanged. Per-host connection settings (port, TLS
pin, timeouts) come from the plugin's own ``vmware_coord.endpoint`` rows; a host without
one uses the secure defaults of ``schemas/endpoint.json`` (port 443, system CAs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..domain.model import Mapping as DatastoreMapping
from ..domain.storage import StorageFacts
from ..vsphere.session import EndpointSettings

Call = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Topology:
    mappings: tuple[DatastoreMapping, ...]
    endpoints: dict[str, EndpointSettings]
    passwords: dict[str, str] = dataclasses.field(repr=False)   # never in a log line
    hosts: dict[str, str] = dataclasses.field(default_factory=dict)   # endpoint id -> host name

    def password_for(self, endpoint_id: str) -> str:
        return self.passwords[endpoint_id]

    def mapping(self, mapping_id: str) -> DatastoreMapping | None:
        return next((m for m in self.mappings if m.id == mapping_id), None)


def endpoint_document(hostname: str, username: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """An endpoint.json document: the stock row's host and user plus the stored settings."""
    return {"host": hostname, "username": username, **dict(settings or {})}


def topology(vmware_rows: Iterable[Mapping[str, Any]],
             endpoint_rows: Iterable[Mapping[str, Any]]) -> Topology:
    settings = {r["hostname"].lower(): r["document"] for r in endpoint_rows}
    mappings: list[DatastoreMapping] = []
    endpoints: dict[str, EndpointSettings] = {}
    passwords: dict[str, str] = {}
    hosts: dict[str, str] = {}
    for row in vmware_rows:
        es = EndpointSettings.from_document(
            endpoint_document(row["hostname"], row["username"], settings.get(row["hostname"].lower())))
        endpoints[es.id], passwords[es.id], hosts[es.id] = es, row["password"], row["hostname"]
        mappings.append(DatastoreMapping(id=str(row["id"]), endpoint_id=es.id,
                                         datastore=row["datastore"], dataset=row["filesystem"]))
    return Topology(tuple(mappings), endpoints, passwords, hosts)


def nas_addresses(call: Call) -> list[str]:
    """The addresses and names ESXi hosts may mount this NAS by: its interfaces' addresses,
    its host name and its fully qualified name."""
    addresses = [alias["address"] for iface in call("interface.query")
                 for alias in iface["state"]["aliases"] if alias["type"] in ("INET", "INET6")]
    net = call("network.configuration.config")
    if net.get("hostname"):
        addresses.append(net["hostname"])
        if net.get("domain"):
            addresses.append(f"{net['hostname']}.{net['domain']}")
    return addresses


def storage_facts(call: Call) -> StorageFacts:
    """Addresses and names of this NAS, dataset mountpoints and zvols' iSCSI NAA ids."""
    addresses = nas_addresses(call)
    datasets = call("pool.dataset.query", [], {"extra": {"retrieve_properties": False}})
    mountpoints = {d["name"]: d["mountpoint"] for d in datasets
                   if d.get("type") == "FILESYSTEM" and d.get("mountpoint")}
    extents: dict[str, list[str]] = {}
    for extent in call("iscsi.extent.query", [], {"select": ["path", "naa"]}):
        if extent.get("path", "").startswith("zvol/") and extent.get("naa"):
            extents.setdefault(extent["path"][len("zvol/"):], []).append(f"naa.{extent['naa'][2:]}")
    return StorageFacts.build(addresses, mountpoints, extents)
