"""Builders for domain facts, with defaults that describe one ordinary, healthy setup.

The default world: a vCenter endpoint ``VC_EP`` (instance ``VC_UUID``) and a NAS reachable
as 10.0.0.1 / nas.example.com exporting ``/mnt/tank/vm`` (dataset ``tank/vm``) over NFS.
Every builder takes keyword overrides so a test states only what it is about.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from typing import Any

from truenas_vmware_coord.domain.model import (
    DatastoreFacts,
    DeviceFacts,
    DiskFacts,
    Inventory,
    Mapping,
    PowerState,
    Provider,
    SnapshotFacts,
    VmFacts,
)
from truenas_vmware_coord.domain.policy import Policy, parse_policy
from truenas_vmware_coord.domain.storage import StorageFacts

VC_EP = "admin@vc.example.com:443"
VC_UUID = "vc-0001"
ESX_EP = "root@esx1.example.com:443"
NAS_ADDRESSES = ("10.0.0.1", "nas.example.com", "nas", "fd00::1")
NOW = 1_700_000_000.0

_ids = itertools.count(1)


def mountpoints(*datasets: str) -> dict[str, str]:
    """TrueNAS's default mountpoints: ``tank/vm`` -> ``/mnt/tank/vm``."""
    return {d: f"/mnt/{d}" for d in datasets}


def storage(
    datasets: Iterable[str] = ("tank", "tank/vm"),
    *,
    addresses: Iterable[str] = NAS_ADDRESSES,
    extents: dict[str, Iterable[str]] | None = None,
) -> StorageFacts:
    return StorageFacts.build(addresses, mountpoints(*datasets), extents or {})


def nfs_datastore(
    name: str = "ds1",
    moref: str | None = None,
    *,
    path: str = "/mnt/tank/vm",
    hosts: tuple[str, ...] = ("10.0.0.1",),
    endpoint: str = VC_EP,
    **kw: Any,
) -> DatastoreFacts:
    return DatastoreFacts(
        endpoint_id=endpoint, moref=moref or f"datastore-{name}", name=name, type="NFS",
        nfs_remote_hosts=hosts, nfs_remote_path=path, **kw,
    )


def vmfs_datastore(
    name: str = "lun1",
    moref: str | None = None,
    *,
    extents: tuple[str, ...] = ("naa.6589cfc000000aa",),
    endpoint: str = VC_EP,
    **kw: Any,
) -> DatastoreFacts:
    return DatastoreFacts(
        endpoint_id=endpoint, moref=moref or f"datastore-{name}", name=name, type="VMFS",
        vmfs_extents=extents, **kw,
    )


def disk(
    file: str,
    *,
    datastore: str | None = None,
    key: int = 2000,
    label: str = "Hard disk 1",
    **kw: Any,
) -> DiskFacts:
    return DiskFacts(key=key, label=label, file=file, datastore=datastore, **kw)


def device(kind: str, label: str, detail: str = "", key: int = 5000) -> DeviceFacts:
    return DeviceFacts(key=key, label=label, kind=kind, detail=detail)


def snapshot(
    name: str = "before upgrade",
    *,
    age_hours: float = 1.0,
    depth: int = 1,
    moref: str | None = None,
) -> SnapshotFacts:
    return SnapshotFacts(
        moref=moref or f"snapshot-{next(_ids)}", name=name, description="",
        create_time=NOW - age_hours * 3600, quiesced=False, depth=depth,
    )


def vm(
    name: str = "vm1",
    *,
    ds: str | None = "ds1",
    endpoint: str = VC_EP,
    vcenter: str | None = VC_UUID,
    moref: str | None = None,
    uuid: str | None = None,
    power: PowerState = PowerState.ON,
    **kw: Any,
) -> VmFacts:
    """A running VM with Tools, its vmx, one disk and layout files on datastore ``ds``.

    ``ds=None`` gives a VM with no files at all; override ``vmx_path``/``files``/``disks``
    to place files elsewhere.
    """
    files: dict[str, Any] = {}
    if ds is not None:
        vmx, vmdk = f"[{ds}] {name}/{name}.vmx", f"[{ds}] {name}/{name}.vmdk"
        files = {
            "vmx_path": vmx,
            "files": (vmx, vmdk, f"[{ds}] {name}/{name}-flat.vmdk"),
            "disks": (disk(vmdk),),
        }
    defaults: dict[str, Any] = {
        "bios_uuid": f"4200-{name}",
        "tools_running": True,
        "snapshot_supported": True,
        "quiesce_supported": True,
        "memory_supported": True,
        **files,
    }
    defaults.update(kw)
    return VmFacts(
        endpoint_id=endpoint,
        moref=moref or f"vm-{name}",
        name=name,
        instance_uuid=uuid if uuid is not None else f"5000-{name}",
        vcenter_uuid=vcenter,
        power_state=power,
        **defaults,
    )


GUEST_EP = "libvirt:local"


def guest(name: str = "g1", *, path: str | None = None, agent: str = "answering", **kw: Any) -> VmFacts:
    """A running libvirt guest whose disk is a file on ``tank/vm`` (``/mnt/tank/vm``)."""
    return VmFacts(
        endpoint_id=GUEST_EP, moref=f"uuid-{name}", name=name, instance_uuid=f"uuid-{name}", bios_uuid=None,
        vcenter_uuid=None, power_state=kw.pop("power", PowerState.ON), provider=Provider.LIBVIRT,
        disks=(DiskFacts(key=0, label="vda (file)", file=path or f"/mnt/tank/vm/{name}.img",
                         datastore=None),),
        agent=agent, guest_filesystems=("/ (ext4 on vda)",), **kw)


def inventory(
    *vms: VmFacts,
    datastores: Iterable[DatastoreFacts] = (),
    endpoint: str = VC_EP,
    vcenter: str | None = VC_UUID,
    hosts: tuple[tuple[str, str], ...] = (("host-1", "esx1.example.com"),),
) -> Inventory:
    return Inventory(
        endpoint_id=endpoint, vcenter_uuid=vcenter, api_version="8.0.3",
        vms=tuple(vms), datastores=tuple(datastores), hosts=hosts,
    )


def mapping(
    dataset: str = "tank/vm",
    datastore: str = "ds1",
    *,
    endpoint: str = VC_EP,
    id: str | None = None,
) -> Mapping:
    return Mapping(id=id or str(next(_ids)), endpoint_id=endpoint, datastore=datastore,
                   dataset=dataset)


def policy(**document: Any) -> Policy:
    """A saved policy (id 1, priority 1) with the given document fields."""
    return dataclasses.replace(parse_policy({"name": "p", "priority": 1, **document}), id=1)
