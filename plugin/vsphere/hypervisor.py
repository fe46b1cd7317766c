"""The engine's hypervisor port implemented with pyVmomi, one instance per session.

Everything the engine asks of vSphere goes through here: the inventory, snapshot creation
and removal by managed object, power operations, a batched read-back of snapshot trees,
and task waiting. Each method is a thin translation; decisions live in the engine. Every
pyVmomi fault and socket error leaves this module as one of the engine's typed failures
(``errors.failure_from``), so nothing above it reads a vSphere type name.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, ParamSpec, TypeVar

from pyVmomi import vim, vmodl

from ..domain.model import Inventory, PowerState, SnapshotFacts
from ..domain.strategies.options import VssContext
from ..engine.ports import Refused, SnapshotRequest, TaskHandle, TaskOutcome, VmState
from . import inventory as inventory_reader
from . import wire
from .errors import failure_from, fault_message
from .session import EndpointSettings, Session, open_session
from .tasks import TaskWatcher

log = logging.getLogger(__name__)

PC = vmodl.query.PropertyCollector

# VirtualMachineWindowsQuiesceSpec.vssBackupContext: ctx_auto lets the VSS writers run (as a
# plain quiesced snapshot does); ctx_file_share_backup skips them.
VSS_CONTEXTS = {VssContext.APPLICATION: "ctx_auto", VssContext.FILE_SYSTEM: "ctx_file_share_backup"}

P = ParamSpec("P")
R = TypeVar("R")


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Let only the engine's typed failures out of a port method."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, not swallowed
            raise failure_from(exc) from None

    return call


MAX_TEMPLATES = 16


class VsphereHypervisor:
    """A logged-in endpoint as the engine sees it."""

    @staticmethod
    def connect(settings: EndpointSettings, password: str) -> VsphereHypervisor:
        return VsphereHypervisor(open_session(settings, password))

    def __init__(self, session: Session) -> None:
        self.session = session
        self.endpoint_id = session.endpoint_id
        self._watcher: TaskWatcher | None = None
        # Workers wait concurrently: without the lock each could create its own watcher
        # (a collector and a thread apiece), all but one leaked.
        self._watcher_lock = threading.Lock()
        self._in_flight: dict[int, float] = {}   # snapshot start calls not answered yet: when begun
        self._begun: dict[str, float] = {}       # task -> when the call that started it began
        self._templates: dict[tuple[str, Hashable], wire.Template] = {}

    # --- reading -------------------------------------------------------------------------

    @translated
    def inventory(self) -> Inventory:
        return inventory_reader.read_inventory(self.session)

    def _properties(self, object_set: list[Any], paths: list[str],
                    kind: type = vim.VirtualMachine) -> dict[str, dict[str, Any]]:
        """Narrow properties of objects of ``kind`` in one retrieval: moref -> {path: value}."""
        spec = PC.FilterSpec(objectSet=object_set, propSet=[PC.PropertySpec(type=kind, pathSet=paths)])
        collector = wire.Collector(self.session.content.propertyCollector)
        return {oc.obj._moId: wire.properties(oc)
                for oc in inventory_reader.retrieve_all(collector, spec)}

    def properties_of(self, kind: type, paths: list[str]) -> dict[str, dict[str, Any]]:
        """``paths`` of every object of ``kind`` in one retrieval: moref -> {path: value}."""
        content = self.session.content
        view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
        try:
            return self._properties([inventory_reader.view_object_spec(view)], paths, kind)
        finally:
            view.DestroyView()

    @translated
    def vm_states(self, morefs: Iterable[str]) -> dict[str, VmState]:
        """Snapshots, power state and consolidation need of many VMs in one retrieval."""
        refs = [self._vm(m) for m in dict.fromkeys(morefs)]
        if not refs:
            return {}
        with wire.PausedGc():   # the reply's tree lives until the last VM's state is read
            found = self._properties([PC.ObjectSpec(obj=r, skip=False) for r in refs],
                                     ["snapshot", "runtime.powerState", "runtime.consolidationNeeded"])
            return {moref: VmState(
                snapshots=inventory_reader.snapshot_facts(props.get("snapshot")),
                power_state=PowerState(str(props.get("runtime.powerState") or "poweredOff")),
                consolidation_needed=bool(props.get("runtime.consolidationNeeded")))
                for moref, props in found.items()}

    @translated
    def all_snapshots(self) -> dict[str, tuple[str, tuple[SnapshotFacts, ...]]]:
        """Every VM's name and snapshots (what reconcile's sweep needs, and no more: not the
        devices and files a full inventory parses)."""
        with wire.PausedGc():
            found = self.properties_of(vim.VirtualMachine, ["name", "snapshot"])
            return {moref: (props.get("name", moref), inventory_reader.snapshot_facts(props.get("snapshot")))
                    for moref, props in found.items()}

    # --- acting --------------------------------------------------------------------------

    @translated
    def start_snapshot(self, request: SnapshotRequest) -> TaskHandle:
        with self._starting() as begun:
            return self._begun_at(self._start_snapshot(request), begun)

    def _start_snapshot(self, request: SnapshotRequest) -> TaskHandle:
        if request.quiesce and self.session.create_snapshot_ex is not False:
            spec: vim.vm.GuestQuiesceSpec
            if request.vss_context:
                spec = vim.vm.WindowsQuiesceSpec(vssBackupContext=VSS_CONTEXTS[request.vss_context],
                                                 timeout=request.quiesce_timeout_minutes)
            else:
                spec = vim.vm.GuestQuiesceSpec(timeout=request.quiesce_timeout_minutes)
            try:
                task = self._template(vim.VirtualMachine, "CreateSnapshotEx_Task", request.name,
                                      request.description, request.memory, spec,
                                      key=dataclasses.replace(request, vm_moref="")).call(request.vm_moref)
                self.session.create_snapshot_ex = True
                return TaskHandle(task._moId, task)
            except vmodl.fault.MethodNotFound:
                # Learnt once per endpoint: this server only has CreateSnapshot_Task.
                log.info("%s: CreateSnapshotEx_Task not implemented; using CreateSnapshot_Task",
                         self.endpoint_id)
                self.session.create_snapshot_ex = False
        task = self._template(vim.VirtualMachine, "CreateSnapshot_Task", request.name, request.description,
                              request.memory, request.quiesce,
                              key=dataclasses.replace(request, vm_moref="")).call(request.vm_moref)
        return TaskHandle(task._moId, task)

    @translated
    def start_remove(self, snapshot_moref: str) -> TaskHandle:
        template = self._template(vim.vm.Snapshot, "RemoveSnapshot_Task", False, key=None)
        with self._starting() as begun:
            task = template.call(snapshot_moref)
        return self._begun_at(TaskHandle(task._moId, task), begun)

    def _template(self, cls: type, method: str, *args: Any, key: Hashable) -> wire.Template:
        """The request of ``method`` with these arguments (``key`` stands for them), serialized
        once per session: a run sends the same create and the same remove to every VM."""
        found = self._templates.get((method, key))
        if found is None:
            # A run's snapshot name is in its key: a session kept for months must not keep
            # every past run's requests (a run needs two or three).
            if len(self._templates) >= MAX_TEMPLATES:
                self._templates.clear()
            found = self._templates[(method, key)] = wire.Template(self.session.stub, cls, method, *args)
        return found

    @translated
    def start_power_on(self, vm_moref: str) -> TaskHandle:
        task = self._vm(vm_moref).PowerOnVM_Task()
        return TaskHandle(task._moId, task)

    @translated
    def start_power_off(self, vm_moref: str) -> TaskHandle:
        task = self._vm(vm_moref).PowerOffVM_Task()
        return TaskHandle(task._moId, task)

    @translated
    def start_suspend(self, vm_moref: str) -> TaskHandle:
        task = self._vm(vm_moref).SuspendVM_Task()
        return TaskHandle(task._moId, task)

    @translated
    def shutdown_guest(self, vm_moref: str, timeout: float, poll: float = 1.0) -> bool:
        """Ask the guest to shut down; True once it is off within ``timeout``."""
        vm = self._vm(vm_moref)
        vm.ShutdownGuest()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.vm_states([vm_moref])[vm_moref].power_state is PowerState.OFF:
                return True
            time.sleep(poll)
        return False

    # --- waiting -------------------------------------------------------------------------

    def _starting(self) -> _InFlight:
        """Count a snapshot start call in flight: the watcher batches the tasks of a wave."""
        return _InFlight(self)

    def _begun_at(self, handle: TaskHandle, begun: float) -> TaskHandle:
        with self._watcher_lock:
            self._begun[handle.id] = begun
        return handle

    def _in_flight_before(self, since: float) -> int:
        """Snapshot start calls begun before ``since`` and not answered yet."""
        with self._watcher_lock:
            return sum(1 for begun in self._in_flight.values() if begun < since)

    @translated
    def wait(self, handle: TaskHandle, timeout: float) -> TaskOutcome | None:
        """The task's outcome, or None when ``timeout`` passes first."""
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = TaskWatcher(self.session, in_flight=self._in_flight_before)
            watcher = self._watcher
            begun = self._begun.pop(handle.id, None)
        future = watcher.watch(handle.ref, begun)
        try:
            ended = future.result(timeout=max(0.0, timeout))
        except TimeoutError:
            watcher.forget(handle.ref)
            return None
        if not ended.ok:
            return TaskOutcome(failure=failure_from(ended.fault) if ended.fault is not None
                               else Refused("VMware reported the task as failed, without a reason"))
        # The engine deals in moref strings, never in pyVmomi objects.
        result = ended.result
        return TaskOutcome(result=getattr(result, "_moId", None if result is None else str(result)))

    def cancel(self, handle: TaskHandle) -> None:
        try:
            handle.ref.CancelTask()
        except Exception as exc:  # noqa: BLE001 - not cancelable, or already finished
            log.info("%s: cancelling %s: %s", self.endpoint_id, handle.id, fault_message(exc))

    def close(self) -> None:
        with self._watcher_lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        self.session.logout()

    def _vm(self, moref: str) -> vim.VirtualMachine:
        return vim.VirtualMachine(moref, stub=self.session.stub)


class _InFlight:
    """A class, not a generator context manager: Python 3.11's contextlib assigns
    ``__traceback__`` on an exception passing through, which the faults of pyvmomi 6.7.1
    (TrueNAS 25.10's) refuse, turning every refusal into an AttributeError."""

    def __init__(self, hv: VsphereHypervisor) -> None:
        self._hv = hv

    def __enter__(self) -> float:
        begun = time.monotonic()
        with self._hv._watcher_lock:
            self._hv._in_flight[id(self)] = begun
        return begun

    def __exit__(self, *exc: object) -> None:
        with self._hv._watcher_lock:
            del self._hv._in_flight[id(self)]


class VsphereConnector:
    """Opens a VsphereHypervisor for an endpoint id; passwords come from a resolver."""

    def __init__(self, endpoints: dict[str, EndpointSettings], password_for: Any) -> None:
        self._endpoints = endpoints
        self._password_for = password_for

    def endpoint_ids(self) -> list[str]:
        return sorted(self._endpoints)

    def open(self, endpoint_id: str) -> VsphereHypervisor:
        return VsphereHypervisor.connect(self._endpoints[endpoint_id], self._password_for(endpoint_id))
