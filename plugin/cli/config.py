"""The command line tool's configuration file: load, validate, and build the engine's parts.

TOML or JSON, validated against schemas/cli.json with field-named errors. Passwords are
read from an environment variable or a file at the moment a connection needs them, never
from the command line or the configuration file itself. libvirt hosts (``libvirt``) need no
mapping: their guests are placed by the host paths of their disks.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

from .. import schemas
from ..app.hooks import HookSettings
from ..domain.errors import FieldError, InvalidInput
from ..domain.model import Mapping
from ..domain.storage import StorageFacts
from ..domain.zfs_names import dataset_problem
from ..engine.ports import Connector
from ..engine.sessions import Connectors
from ..engine.settings import Settings, parse_settings
from ..libvirt.settings import AGENT_TIMEOUT_S, LibvirtSettings
from ..vsphere.hypervisor import VsphereConnector
from ..vsphere.session import EndpointSettings
from ..zfs import snapshot as zfs_snapshot
from ..zfs.shell import Shell
from . import documents


@dataclasses.dataclass(frozen=True)
class CliConfig:
    path: Path
    state_dir: Path
    endpoints: dict[str, EndpointSettings]        # by endpoint id
    endpoint_names: dict[str, str]                 # config name -> endpoint id
    password_sources: dict[str, tuple[str, str]]   # endpoint id -> ("env"|"file", value)
    mappings: tuple[Mapping, ...]
    addresses: tuple[str, ...]
    iscsi_extents: dict[str, list[str]]
    settings: Settings
    hooks: HookSettings = HookSettings()
    explicit_journal: bool = False
    libvirt: tuple[LibvirtSettings, ...] = ()     # libvirt hosts whose guests are coordinated
    restore_share: str = "sharenfs"                # how a restore exports its clone (nas.restore_share)

    @property
    def journal_path(self) -> Path:
        if self.explicit_journal:
            return Path(self.settings.journal_path)
        return self.state_dir / "journal.sqlite"

    @property
    def policy_db(self) -> Path:
        return self.state_dir / "policies.sqlite"

    def password_for(self, endpoint_id: str) -> str:
        """The password, from its source; InvalidInput naming the field when unavailable."""
        name = next(n for n, e in self.endpoint_names.items() if e == endpoint_id)
        kind, value = self.password_sources.get(endpoint_id, ("", ""))
        field = f"config.endpoints.{name}"
        if kind == "env":
            password = os.environ.get(value)
            if not password:
                raise InvalidInput.single(f"{field}.password_env",
                                          f"environment variable {value} is not set or empty")
            return password
        if kind == "file":
            path = Path(value)
            text = documents.read_file(path, f"{field}.password_file", max_bytes=64 * 1024)
            if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidInput.single(f"{field}.password_file",
                                          f"{path} is readable by others; chmod 600 it")
            password = text.splitlines()[0] if text.strip() else ""
            if not password:
                raise InvalidInput.single(f"{field}.password_file", f"{path} is empty")
            return password
        raise InvalidInput.single(field, "no password source: set password_env or password_file")

    @property
    def local_endpoints(self) -> tuple[str, ...]:
        """The libvirt endpoints: looked at for every plan (their guests need no mapping)."""
        return tuple(e.id for e in self.libvirt)

    def connector(self) -> Connector:
        """vSphere endpoints and libvirt hosts behind one connector (libvirt imported only
        when one is configured: the binding is an optional dependency)."""
        vsphere = VsphereConnector(self.endpoints, self.password_for)
        if not self.libvirt:
            return vsphere
        try:
            from ..libvirt.hypervisor import LibvirtConnector
        except ImportError as exc:   # a configuration this host cannot serve: bad input, not a crash
            raise InvalidInput.single("libvirt", (
                f"libvirt hosts are configured, but the libvirt binding cannot be imported ({exc}): "
                "pip install 'truenas-vmware-coord[libvirt]' (it builds against libvirt-dev)")) from None
        return Connectors(vsphere, LibvirtConnector(self.libvirt))

    def storage_facts(self, shell: Shell) -> StorageFacts:
        """The NAS's addresses and every dataset's mountpoint, as ZFS reports them now."""
        mountpoints = {name: mp for name, mp in zfs_snapshot.list_datasets(shell).items() if mp}
        return StorageFacts.build(self.addresses, mountpoints, self.iscsi_extents)


def _read(path: Path) -> Any:
    text = documents.read_file(path, "config")
    if path.suffix == ".json":
        return documents.parse_json(text, f"config ({path})")
    return documents.parse_toml(text, f"config ({path})")


def load_config(path: str | os.PathLike[str]) -> CliConfig:
    path = Path(path)
    document = _read(path)
    schemas.validate("cli", document, field="config")
    errors: list[FieldError] = []
    endpoints: dict[str, EndpointSettings] = {}
    names: dict[str, str] = {}
    sources: dict[str, tuple[str, str]] = {}
    for name, entry in document.get("endpoints", {}).items():
        settings = EndpointSettings.from_document(entry["connection"])
        if settings.id in endpoints:
            errors.append(FieldError(f"config.endpoints.{name}",
                                     f"the same endpoint as '{_name_of(names, settings.id)}'"))
        endpoints[settings.id], names[name] = settings, settings.id
        if "password_env" in entry and "password_file" in entry:
            errors.append(FieldError(f"config.endpoints.{name}",
                                     "give either password_env or password_file, not both"))
        elif "password_env" in entry:
            sources[settings.id] = ("env", entry["password_env"])
        elif "password_file" in entry:
            sources[settings.id] = ("file", entry["password_file"])
    mappings = []
    seen_ids: set[str] = set()
    for i, m in enumerate(document.get("mappings", [])):
        mapping_id = m.get("id", str(i + 1))
        if m["endpoint"] not in names:
            known = ", ".join(sorted(names))
            errors.append(FieldError(f"config.mappings.{i}.endpoint",
                                     f"no endpoint named '{m['endpoint']}' (known: {known})"))
            continue
        if mapping_id in seen_ids:
            errors.append(FieldError(f"config.mappings.{i}.id", f"'{mapping_id}' is used twice"))
        seen_ids.add(mapping_id)
        mappings.append(Mapping(id=mapping_id, endpoint_id=names[m["endpoint"]],
                                datastore=m["datastore"], dataset=m["dataset"]))
    guests = tuple(LibvirtSettings(name, entry["uri"], entry.get("agent_timeout_seconds", AGENT_TIMEOUT_S))
                   for name, entry in sorted(document.get("libvirt", {}).items()))
    if not endpoints and not guests:
        errors.append(FieldError("config.endpoints", "give at least one endpoint (a vCenter or ESXi host), "
                                                     "or a libvirt host under config.libvirt"))
    settings = parse_settings(document.get("engine"), field="config.engine")
    hooks = document.get("hooks", {})
    for i, dataset in enumerate(hooks.get("recursive", ())):
        problem = dataset_problem(dataset)
        if problem:
            errors.append(FieldError(f"config.hooks.recursive.{i}", problem))
    if errors:
        raise InvalidInput(errors)
    nas = document.get("nas", {})
    return CliConfig(
        path=path, state_dir=Path(document.get("state_dir", "/var/lib/vmware-coord")),
        endpoints=endpoints, endpoint_names=names, password_sources=sources,
        mappings=tuple(mappings), addresses=tuple(nas.get("addresses", ())),
        iscsi_extents=dict(nas.get("iscsi_extents", {})), settings=settings,
        hooks=HookSettings.from_document(hooks),
        explicit_journal="journal_path" in (document.get("engine") or {}), libvirt=guests,
        restore_share=nas.get("restore_share", "sharenfs"))


def _name_of(names: dict[str, str], endpoint_id: str) -> str:
    return next(n for n, e in names.items() if e == endpoint_id)
