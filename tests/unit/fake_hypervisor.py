"""An in-memory hypervisor behind the engine's port, for unit tests of the engine's logic.

It stands for vSphere as the engine sees it through ``engine/ports.py`` and as the
simulator rig and ``shared/design/vsphere.md`` show it: snapshots with ids and names, power
states, tasks that end well, end with a fault, or never end until cancelled; a quiesce that
VMware silently ignores (Tools unable to quiesce); a guest that ignores a shutdown; calls
refused at once; answers lost after the call took effect; an endpoint that stops answering.
Where it is simpler than vSphere: no files, no hosts' limits, one task per call, and every
effect lands at once when its delay has passed. Each fake endpoint (``FakeVcenter``) is
shared by the sessions opened to it, like a real vCenter.

Troubles are set per (operation, VM) with ``trouble(operation, vm, kind)``, where kind is
``refuse`` (the call raises Refused, nothing happens), ``fail`` (the task ends with a fault),
``lose`` (the effect happens, the caller gets NoAnswer), ``lose_late`` (the caller gets
NoAnswer at once, the effect happens after the delay: a create VMware finishes after the
caller gave up), ``hang`` (the task runs until cancelled), and ``delay(operation, vm,
seconds)`` makes the task take that long. ``stop_answering()`` stands for a vCenter that
hangs, or a network that drops its packets (tests/integration/test_fault_injection.py
freezes a proxy in front of the simulator for the real thing): every call, login, logout
and cancel blocks, and waits see no update, until ``answer_again()``.

A libvirt host (``FakeVcenter(..., guests=True)``) stands for what ``libvirt/hypervisor.py``
shows of a real one (tests/integration/test_libvirt_guest.py runs the real thing): guests
that are frozen (a count of file systems, 0 when thawed) and paused; a freeze answers how
many file systems it froze, a thaw how many it thawed; ``frozen_files`` sets how many a guest
has (0: a guest with nothing freezable); ``thawed_by_someone(vm)`` thaws a guest behind the
engine's back.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable

import factories as f
from truenas_vmware_coord.domain.model import Inventory, PowerState, SnapshotFacts, VmFacts
from truenas_vmware_coord.engine.ports import (
    Gone,
    NoAnswer,
    Refused,
    SnapshotRequest,
    TaskHandle,
    TaskOutcome,
    Unavailable,
    VmState,
)

OPERATIONS = ("snapshot", "remove", "power_on", "power_off", "suspend", "shutdown", "read", "freeze", "thaw",
              "pause", "resume")
_ids = itertools.count(1)


@dataclasses.dataclass
class Trouble:
    kind: str                       # refuse | fail | lose | hang
    fault_type: str = "InvalidState"


class _Task:
    def __init__(self, effect: Callable[[], str | None], delay: float, trouble: Trouble | None) -> None:
        self.id = f"task-{next(_ids)}"
        self.done = threading.Event()
        self.outcome: TaskOutcome | None = None
        self._effect = effect
        self._lock = threading.Lock()
        if trouble is not None and trouble.kind == "hang":
            return
        if trouble is not None and trouble.kind == "fail":
            self._finish(TaskOutcome(failure=Refused(f"{trouble.fault_type}: injected", trouble.fault_type)))
        elif delay > 0:
            threading.Timer(delay, self._run).start()
        else:
            self._run()

    def _run(self) -> None:
        with self._lock:
            if self.done.is_set():
                return   # cancelled first: the effect never happens
            try:
                outcome = TaskOutcome(result=self._effect())
            except Refused as exc:
                outcome = TaskOutcome(failure=exc)
            self.outcome = outcome
            self.done.set()

    def _finish(self, outcome: TaskOutcome) -> None:
        with self._lock:
            if not self.done.is_set():
                self.outcome = outcome
                self.done.set()

    def cancel(self) -> None:
        failure = Refused("RequestCanceled: the task was cancelled", "RequestCanceled")
        self._finish(TaskOutcome(failure=failure))


class FakeVcenter:
    """One endpoint's state, shared by every session opened to it."""

    def __init__(self, vms: Iterable[VmFacts], endpoint_id: str = f.VC_EP,
                 datastores: Iterable = (), clock: Callable[[], float] = time.time,
                 guests: bool = False) -> None:
        self.endpoint_id = endpoint_id
        self.guests = guests
        self.frozen: dict[str, int] = {}
        self.freezable: dict[str, int] = {}
        self.facts = {vm.moref: vm for vm in vms}
        self.datastores = tuple(datastores) or (f.nfs_datastore(),)
        self.power = {m: vm.power_state for m, vm in self.facts.items()}
        self.snapshots: dict[str, list[SnapshotFacts]] = {
            m: list(vm.snapshots) for m, vm in self.facts.items()}
        self.troubles: dict[tuple[str, str], Trouble] = {}
        self.delays: dict[tuple[str, str], float] = {}
        self.quiesce_ignored: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.before_call: Callable[[str, str], None] | None = None
        self.unreachable = False
        self.answering = threading.Event()
        self.answering.set()
        self.sessions_open = 0
        self.clock = clock
        self.lock = threading.RLock()

    # --- shaping a scenario --------------------------------------------------------------

    def trouble(self, operation: str, vm: str, kind: str, fault_type: str = "InvalidState") -> None:
        assert operation in OPERATIONS, operation
        self.troubles[(operation, self._moref(vm))] = Trouble(kind, fault_type)

    def clear(self, operation: str, vm: str) -> None:
        self.troubles.pop((operation, self._moref(vm)), None)

    def delay(self, operation: str, vm: str, seconds: float) -> None:
        self.delays[(operation, self._moref(vm))] = seconds

    def stop_answering(self) -> None:
        self.answering.clear()

    def answer_again(self) -> None:
        self.answering.set()

    def _moref(self, vm: str) -> str:
        """A VM's moref from its name or moref; other targets ("inventory", "states") as given."""
        return next((m for m, v in self.facts.items() if vm in (m, v.name)), vm)

    # --- what a test checks --------------------------------------------------------------

    def marked_snapshots(self, prefix: str = "truenas-vmware-coord:") -> list[str]:
        with self.lock:
            return sorted(f"{self.facts[m].name}: {s.name}" for m, snaps in self.snapshots.items()
                          for s in snaps if s.name.startswith(prefix))

    def not_running(self) -> list[str]:
        """VMs that were running when the scenario began and are not now."""
        with self.lock:
            return sorted(self.facts[m].name for m, p in self.power.items()
                          if self.facts[m].power_state is PowerState.ON and p is not PowerState.ON)

    def power_of(self, vm: str) -> PowerState:
        return self.power[self._moref(vm)]

    def frozen_guests(self) -> list[str]:
        with self.lock:
            return sorted(self.facts[m].name for m, n in self.frozen.items() if n)

    def frozen_files(self, vm: str, count: int) -> None:
        self.freezable[self._moref(vm)] = count

    def thawed_by_someone(self, vm: str) -> None:
        with self.lock:
            self.frozen[self._moref(vm)] = 0

    # --- what the port calls ---------------------------------------------------------------

    def call(self, operation: str, target: str) -> Trouble | None:
        if self.unreachable:
            raise NoAnswer("no answer from VMware: connection refused", "ConnectionRefusedError")
        with self.lock:
            self.calls.append((operation, target))
        if self.before_call is not None:
            self.before_call(operation, target)
        self.answering.wait()
        trouble = self.troubles.get((operation, target))
        if trouble is not None and trouble.kind == "refuse":
            raise Refused(f"{trouble.fault_type}: injected", trouble.fault_type)
        return trouble

    def vm_of_snapshot(self, snapshot_id: str) -> str:
        with self.lock:
            for moref, snaps in self.snapshots.items():
                if any(s.moref == snapshot_id for s in snaps):
                    return moref
        raise Gone("ManagedObjectNotFound: no such snapshot", "ManagedObjectNotFound")


class FakeHypervisor:
    """One session to a FakeVcenter; implements ``engine.ports.Hypervisor``."""

    def __init__(self, vcenter: FakeVcenter) -> None:
        self.vc = vcenter
        self.endpoint_id = vcenter.endpoint_id
        self.closed = False

    # --- reading -------------------------------------------------------------------------

    def inventory(self) -> Inventory:
        self.vc.call("read", "inventory")
        with self.vc.lock:
            vms = tuple(dataclasses.replace(vm, power_state=self.vc.power[m],
                                            snapshots=tuple(self.vc.snapshots[m]))
                        for m, vm in self.vc.facts.items())
        return f.inventory(*vms, datastores=self.vc.datastores, endpoint=self.endpoint_id)

    def vm_states(self, morefs: Iterable[str]) -> dict[str, VmState]:
        wanted = list(morefs)
        self.vc.call("read", "states")
        with self.vc.lock:
            return {m: VmState(tuple(self.vc.snapshots[m]), self.vc.power[m], False)
                    for m in wanted if m in self.vc.facts}

    def all_snapshots(self) -> dict[str, tuple[str, tuple[SnapshotFacts, ...]]]:
        self.vc.call("read", "snapshots")
        with self.vc.lock:
            return {m: (vm.name, tuple(self.vc.snapshots[m])) for m, vm in self.vc.facts.items()}

    # --- acting --------------------------------------------------------------------------

    def _start(self, operation: str, vm: str, effect: Callable[[], str | None]) -> TaskHandle:
        if vm not in self.vc.facts:
            raise Gone("ManagedObjectNotFound: no such VM", "ManagedObjectNotFound")
        trouble = self.vc.call(operation, vm)
        delay = self.vc.delays.get((operation, vm), 0.0)
        if trouble is not None and trouble.kind == "lose":
            effect()
            raise NoAnswer("no answer from VMware: the read timed out", "timeout")
        if trouble is not None and trouble.kind == "lose_late":
            threading.Timer(delay, effect).start()
            raise NoAnswer("no answer from VMware: the read timed out", "timeout")
        task = _Task(effect, delay, trouble)
        return TaskHandle(task.id, task)

    def start_snapshot(self, request: SnapshotRequest) -> TaskHandle:
        vm = request.vm_moref

        def create() -> str:
            with self.vc.lock:
                snaps = self.vc.snapshots[vm]
                quiesced = (request.quiesce and self.vc.facts[vm].tools_running
                            and vm not in self.vc.quiesce_ignored)
                snap = SnapshotFacts(moref=f"snapshot-{next(_ids)}", name=request.name,
                                     description=request.description, create_time=self.vc.clock(),
                                     quiesced=quiesced, depth=len(snaps) + 1)
                snaps.append(snap)
                return snap.moref

        return self._start("snapshot", vm, create)

    def start_remove(self, snapshot_moref: str) -> TaskHandle:
        vm = self.vc.vm_of_snapshot(snapshot_moref)

        def remove() -> None:
            with self.vc.lock:
                before = self.vc.snapshots[vm]
                if not any(s.moref == snapshot_moref for s in before):
                    raise Gone("ManagedObjectNotFound: no such snapshot", "ManagedObjectNotFound")
                self.vc.snapshots[vm] = [s for s in before if s.moref != snapshot_moref]

        return self._start("remove", vm, remove)

    def _set_power(self, vm: str, want_from: PowerState | None, to: PowerState) -> Callable[[], None]:
        def change() -> None:
            with self.vc.lock:
                now = self.vc.power[vm]
                if now is to or (want_from is not None and now is not want_from):
                    raise Refused(f"InvalidPowerState: the VM is {now.value}", "InvalidPowerState")
                self.vc.power[vm] = to
        return change

    def start_power_on(self, vm_moref: str) -> TaskHandle:
        return self._start("power_on", vm_moref, self._set_power(vm_moref, None, PowerState.ON))

    def start_power_off(self, vm_moref: str) -> TaskHandle:
        return self._start("power_off", vm_moref, self._set_power(vm_moref, PowerState.ON, PowerState.OFF))

    def start_suspend(self, vm_moref: str) -> TaskHandle:
        suspend = self._set_power(vm_moref, PowerState.ON, PowerState.SUSPENDED)
        return self._start("suspend", vm_moref, suspend)

    def shutdown_guest(self, vm_moref: str, timeout: float) -> bool:
        if vm_moref not in self.vc.facts:
            raise Gone("ManagedObjectNotFound: no such VM", "ManagedObjectNotFound")
        trouble = self.vc.call("shutdown", vm_moref)
        if not self.vc.facts[vm_moref].tools_running:
            raise Refused("ToolsUnavailable: VMware Tools are not running", "ToolsUnavailable")
        if trouble is not None and trouble.kind == "hang":
            time.sleep(max(0.0, timeout))
            return False   # the guest ignores the request
        delay = self.vc.delays.get(("shutdown", vm_moref), 0.0)
        off = self._set_power(vm_moref, PowerState.ON, PowerState.OFF)
        if delay <= timeout:
            time.sleep(delay)
            off()
            return True
        # The guest goes down after the caller gave up waiting.
        threading.Timer(delay, off).start()
        time.sleep(max(0.0, timeout))
        return False

    # --- waiting -------------------------------------------------------------------------

    def wait(self, handle: TaskHandle, timeout: float) -> TaskOutcome | None:
        if self.vc.unreachable:
            raise NoAnswer("no answer from VMware: connection refused", "ConnectionRefusedError")
        task: _Task = handle.ref  # type: ignore[assignment]
        started = time.monotonic()
        if not self.vc.answering.wait(max(0.0, timeout)):
            return None   # no update comes from a vCenter that does not answer
        return task.outcome if task.done.wait(max(0.0, timeout - (time.monotonic() - started))) else None

    def cancel(self, handle: TaskHandle) -> None:
        self.vc.answering.wait()
        handle.ref.cancel()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.vc.answering.wait()
        if not self.closed:
            self.closed = True
            with self.vc.lock:
                self.vc.sessions_open -= 1


class FakeGuestHypervisor(FakeHypervisor):
    """A session to a fake libvirt host: ``FakeHypervisor`` plus ``engine.ports.Guests``."""

    def start_freeze(self, vm_moref: str) -> TaskHandle:
        def freeze() -> str:
            with self.vc.lock:
                if self.vc.frozen.get(vm_moref):
                    raise Refused("the agent is in frozen state", "libvirt:1")
                count = self.vc.freezable.get(vm_moref, 1)
                self.vc.frozen[vm_moref] = count
                return str(count)
        return self._start("freeze", vm_moref, freeze)

    def start_thaw(self, vm_moref: str) -> TaskHandle:
        def thaw() -> str:
            with self.vc.lock:
                return str(self.vc.frozen.pop(vm_moref, 0))
        return self._start("thaw", vm_moref, thaw)

    def start_pause(self, vm_moref: str) -> TaskHandle:
        return self._start("pause", vm_moref, self._set_power(vm_moref, PowerState.ON, PowerState.PAUSED))

    def start_resume(self, vm_moref: str) -> TaskHandle:
        return self._start("resume", vm_moref, self._set_power(vm_moref, PowerState.PAUSED, PowerState.ON))

    def cancel(self, handle: TaskHandle) -> None:
        """A libvirt call cannot be taken back (``LibvirtHypervisor.cancel``): it lands when it lands."""


class FakeConnector:
    """Opens FakeHypervisors; an unreachable endpoint refuses new sessions."""

    def __init__(self, *vcenters: FakeVcenter) -> None:
        self.vcenters = {vc.endpoint_id: vc for vc in vcenters}

    def endpoint_ids(self) -> list[str]:
        return sorted(self.vcenters)

    def open(self, endpoint_id: str) -> FakeHypervisor:
        vc = self.vcenters[endpoint_id]
        if vc.unreachable:
            raise Unavailable("cannot connect while logging in: connection refused")
        vc.answering.wait()
        with vc.lock:
            vc.sessions_open += 1
        return FakeGuestHypervisor(vc) if vc.guests else FakeHypervisor(vc)
