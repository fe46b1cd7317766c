"""A place for one engine test: its own ZFS dataset, NFS datastore and VMs on a shared simulator.

Each test gets a fresh dataset and a datastore backed by it, so VMs, faults and snapshots
of one test never show up in another's plan.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

from pyVmomi import vim
from truenas_vmware_coord.domain.model import Mapping
from truenas_vmware_coord.domain.policy import DEFAULT_LADDER, Ladder, Policy, parse_policy
from truenas_vmware_coord.domain.selection import SNAPSHOT_NAME_PREFIX
from truenas_vmware_coord.domain.storage import StorageFacts
from truenas_vmware_coord.engine.config import EngineConfig
from truenas_vmware_coord.engine.coordinator import Coordinator
from truenas_vmware_coord.engine.journal import Journal
from truenas_vmware_coord.vsphere.hypervisor import VsphereConnector
from truenas_vmware_coord.vsphere.session import EndpointSettings
from truenas_vmware_coord.vsphere.tls import VerifyMode
from truenas_vmware_coord.zfs.shell import LocalShell
from truenas_vmware_coord.zfs.snapshot import create_snapshot

from tools.rig import inventory, vcsim, zfs

NAS = "nas.test.local"
_counter = itertools.count()


def endpoint_settings(sim: vcsim.Simulator, **overrides: object) -> EndpointSettings:
    values: dict = {"id": f"{sim.username}@{sim.host}:{sim.port}", "host": sim.host,
                    "port": sim.port, "username": sim.username, "verify": VerifyMode.PINNED,
                    "fingerprint": sim.sha256, "connect_timeout": 5.0, "read_timeout": 30.0}
    values.update(overrides)
    return EndpointSettings(**values)


def policies(*documents: dict) -> list[Policy]:
    return [dataclasses.replace(parse_policy(d), id=i + 1) for i, d in enumerate(documents)]


@dataclasses.dataclass
class EngineEnv:
    sim: vcsim.Simulator
    pool: zfs.ZfsPool
    si: vim.ServiceInstance
    dataset: str
    mountpoint: Path
    datastore: str
    journal_path: Path

    @staticmethod
    def create(sim: vcsim.Simulator, pool: zfs.ZfsPool, si: vim.ServiceInstance,
               tmp_path: Path) -> EngineEnv:
        leaf = f"eng{next(_counter)}x{sim.port}"
        dataset = pool.create_dataset(f"engine/{leaf}")
        mountpoint = pool.dataset_mountpoint(dataset)
        datastore = inventory.add_nfs_datastore(si, str(mountpoint), NAS)
        return EngineEnv(sim, pool, si, dataset, mountpoint, datastore, tmp_path / "journal.sqlite")

    def vm(self, name: str, **kwargs: object) -> vim.VirtualMachine:
        return inventory.create_vm(self.si, f"{self.datastore}-{name}", self.datastore, **kwargs)

    def mapping(self) -> Mapping:
        return Mapping(id="m1", endpoint_id=endpoint_settings(self.sim).id,
                       datastore=self.datastore, dataset=self.dataset)

    def storage(self) -> StorageFacts:
        return StorageFacts.build([NAS], {self.dataset: str(self.mountpoint)}, {})

    def coordinator(self, policy_list: Sequence[Policy] = (), config: EngineConfig | None = None,
                    default_ladder: Ladder = DEFAULT_LADDER, password: str | None = None,
                    settings: EndpointSettings | None = None,
                    connector: VsphereConnector | None = None) -> Coordinator:
        settings = settings or endpoint_settings(self.sim)
        secret = password if password is not None else self.sim.password
        return Coordinator(
            connector=connector or VsphereConnector({settings.id: settings}, lambda _id: secret),
            journal=Journal(self.journal_path),
            mappings=[dataclasses.replace(self.mapping(), endpoint_id=settings.id)],
            storage=self.storage, policies=list(policy_list), default_ladder=default_ladder,
            config=config or EngineConfig())

    def take_snapshot(self, name: str):
        def take(properties: dict[str, str]) -> str:
            return create_snapshot(LocalShell(), self.dataset, name, False, properties)
        return take

    def product_snapshots(self) -> list[str]:
        """Every VMware snapshot carrying this product's marker on this datastore's VMs."""
        return [f"{vm.name}: {n}" for vm in inventory.vms(self.si)
                if vm.name.startswith(f"{self.datastore}-")
                for n in inventory.snapshot_names(vm) if n.startswith(SNAPSHOT_NAME_PREFIX)]

    def outcome(self, report: dict, name: str) -> dict:
        return next(v for v in report["vms"] if v["name"] == f"{self.datastore}-{name}")
