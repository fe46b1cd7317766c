"""What the engine needs from the outside world, in the product's words, and nothing more.

The engine talks to these protocols only; pyVmomi (``vsphere/hypervisor.py``), libvirt
(``libvirt/hypervisor.py``) and the ``zfs`` command (``zfs/``) implement them, and
``tests/unit/fake_hypervisor.py`` has an in-memory hypervisor. A hypervisor whose VMs run a
guest agent (libvirt) also offers ``Guests``: freezing and thawing a guest's file systems,
pausing and resuming it.
Adapters translate every failure into one of the typed failures below, so the engine never
sees a pyVmomi fault, a socket error or a vSphere type name. Keeping the surface this
small is what lets the same transaction run from middlewared, the command line and hooks
of other ZFS tools, and be unit-tested in seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import ClassVar, Protocol

from ..domain.model import Inventory, PowerState, SnapshotFacts
from ..domain.strategies.options import VssContext

# --- failures -------------------------------------------------------------------------------


class HypervisorFailure(Exception):
    """A failure the engine acts on. ``message`` is one readable, secret-free line;
    ``fault_type`` is the hypervisor's own name for it, for reports (never for decisions)."""

    kind: ClassVar[str] = "failure"

    def __init__(self, message: str, fault_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fault_type = fault_type


class Refused(HypervisorFailure):
    """The hypervisor answered and said no: nothing was done, nothing needs undoing."""

    kind = "refused"


class Gone(Refused):
    """The object (VM, snapshot, task) does not exist (any more)."""

    kind = "gone"


class NoAnswer(HypervisorFailure):
    """No answer (timeout, dropped connection): the request may still take effect."""

    kind = "no_answer"


class Unavailable(HypervisorFailure):
    """No session could be opened: unreachable, login refused, certificate not trusted."""

    kind = "unavailable"


def describe(exc: BaseException) -> str:
    """One line for a person: a typed failure's own message, else the exception's type."""
    if isinstance(exc, HypervisorFailure):
        return exc.message
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- values -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskHandle:
    """A started hypervisor task: its id for journals, the adapter's own reference to it."""

    id: str
    ref: object = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How a task ended: ``result`` (a created object's id) or the ``failure``."""

    result: str | None = None
    failure: HypervisorFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclasses.dataclass(frozen=True)
class SnapshotRequest:
    vm_moref: str
    name: str
    description: str
    memory: bool
    quiesce: bool
    quiesce_timeout_minutes: int | None = None
    vss_context: VssContext | None = None


@dataclasses.dataclass(frozen=True)
class VmState:
    snapshots: tuple[SnapshotFacts, ...]
    power_state: PowerState
    consolidation_needed: bool


# --- ports ------------------------------------------------------------------------------------


class Hypervisor(Protocol):
    """One logged-in endpoint. Every method raises only ``HypervisorFailure``s."""

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

    def wait(self, handle: TaskHandle, timeout: float) -> TaskOutcome | None:
        """The task's outcome, or None when ``timeout`` passes first."""
        ...

    def cancel(self, handle: TaskHandle) -> None: ...

    def close(self) -> None: ...


class Guests(Protocol):
    """What an endpoint whose guests run an agent offers besides ``Hypervisor`` (libvirt).

    Each is a task like the others (``Hypervisor.wait``): a freeze whose answer is lost may
    still freeze the guest, so the engine treats it as every create that got no answer."""

    def start_freeze(self, vm_moref: str) -> TaskHandle:
        """Freeze the guest's file systems through its agent; the result is how many it froze."""
        ...

    def start_thaw(self, vm_moref: str) -> TaskHandle:
        """Thaw them; the result is how many it thawed (0: nothing was frozen)."""
        ...

    def start_pause(self, vm_moref: str) -> TaskHandle: ...

    def start_resume(self, vm_moref: str) -> TaskHandle: ...


def guests(hv: Hypervisor) -> Guests:
    """``hv`` as a ``Guests``; ``Refused`` when its endpoint has no guest agents (VMware)."""
    if not all(callable(getattr(hv, m, None)) for m in ("start_freeze", "start_thaw", "start_pause",
                                                        "start_resume")):
        raise Refused(f"endpoint {hv.endpoint_id} does not freeze or pause guests")
    return hv  # type: ignore[return-value]


class Connector(Protocol):
    """Opens a Hypervisor by endpoint id (raises ``Unavailable``)."""

    def endpoint_ids(self) -> list[str]: ...

    def open(self, endpoint_id: str) -> Hypervisor: ...
