"""What the engine needs from the outside world, and nothing more.

The coordinator talks to these protocols only; pyVmomi (vsphere/hypervisor.py) and the
``zfs`` command (zfs/) implement them. Keeping the surface this small is what lets the
same transaction run from middlewared, the command line and hooks of other ZFS tools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol

from ..domain.model import Inventory, PowerState, SnapshotFacts


@dataclasses.dataclass(frozen=True)
class TaskHandle:
    """A started hypervisor task: its id for journals, its reference for the adapter."""

    id: str
    ref: Any = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class SnapshotRequest:
    vm_moref: str
    name: str
    description: str
    memory: bool
    quiesce: bool
    quiesce_timeout_minutes: int | None = None
    vss_context: str | None = None   # VMware's vssBackupContext value


@dataclasses.dataclass(frozen=True)
class VmState:
    snapshots: tuple[SnapshotFacts, ...]
    power_state: PowerState
    consolidation_needed: bool


class TaskResult(Protocol):
    state: str
    result: Any

    @property
    def ok(self) -> bool: ...

    @property
    def fault_type(self) -> str | None: ...

    @property
    def fault_text(self) -> str | None: ...


class Hypervisor(Protocol):
    """One logged-in endpoint."""

    endpoint_id: str

    def inventory(self) -> Inventory: ...

    def vm_states(self, morefs: Iterable[str]) -> dict[str, VmState]: ...

    def all_snapshots(self) -> dict[str, tuple[str, tuple[SnapshotFacts, ...]]]: ...

    def start_snapshot(self, request: SnapshotRequest) -> TaskHandle: ...

    def start_remove(self, snapshot_moref: str) -> TaskHandle: ...

    def start_power_on(self, vm_moref: str) -> TaskHandle: ...

    def start_power_off(self, vm_moref: str) -> TaskHandle: ...

    def start_suspend(self, vm_moref: str) -> TaskHandle: ...

    def shutdown_guest(self, vm_moref: str, timeout: float) -> bool: ...

    def wait(self, handle: TaskHandle, timeout: float) -> TaskResult | None: ...

    def cancel(self, handle: TaskHandle) -> None: ...

    def close(self) -> None: ...


class Connector(Protocol):
    """Opens a Hypervisor by endpoint id (raises vsphere.errors.VsphereError)."""

    def endpoint_ids(self) -> list[str]: ...

    def open(self, endpoint_id: str) -> Hypervisor: ...
