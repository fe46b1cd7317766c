"""The engine's ``Hypervisor`` and ``Guests`` ports on one libvirt connection.

libvirt's calls block, so each operation runs in a worker thread of this session and is
handed to the engine as a task: the engine's deadline bounds its wait, and the agent
response timeout (``virDomainAgentSetResponseTimeout``, set on each guest before its agent
is asked anything) bounds the call itself, so a hung agent holds neither the run nor a
thread for long. libvirt keeps that timeout on the running domain until it stops; the
other agent commands of whoever else drives the domain (TrueNAS) get it too, which only
bounds them as well.

A freeze is ``virDomainFSFreeze`` (guest-fsfreeze-freeze: every freezable file system of the
guest) and answers how many it froze; a thaw answers how many it thawed. Pausing is
``virDomainSuspend`` (what TrueNAS calls suspending a VM: TS-25.10.6
``plugins/vm/supervisor/supervisor.py:256-258``), resuming ``virDomainResume``. This
product takes no libvirt snapshots: the ZFS snapshot is the snapshot.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable

import libvirt

from ..domain.model import Inventory, PowerState, SnapshotFacts, VmFacts
from ..engine.ports import Gone, Refused, SnapshotRequest, TaskHandle, TaskOutcome, VmState
from . import inventory as reader
from .errors import failure_from, message_of, unavailable
from .settings import LibvirtSettings

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_silenced = False
_event_loop_lock = threading.Lock()
_event_loop: threading.Thread | None = None


def _quiet() -> None:
    """libvirt prints every error on stderr by default; here each becomes a typed failure."""
    global _silenced
    if not _silenced:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _silenced = True


def _ensure_event_loop() -> None:
    """The embedded driver (``qemu:///embed``) runs in this process and needs an event loop."""
    global _event_loop
    with _event_loop_lock:
        if _event_loop is None:
            libvirt.virEventRegisterDefaultImpl()

            def run() -> None:
                while True:
                    libvirt.virEventRunDefaultImpl()

            _event_loop = threading.Thread(target=run, name="libvirt-events", daemon=True)
            _event_loop.start()


class LibvirtHypervisor:
    """One connection to a libvirt host, as the engine sees it."""

    def __init__(self, settings: LibvirtSettings, connection: libvirt.virConnect) -> None:
        self.settings = settings
        self.endpoint_id = settings.id
        self._conn = connection
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers,
                                                           thread_name_prefix=f"libvirt-{settings.name}")

    # --- reading -------------------------------------------------------------------------

    def inventory(self) -> Inventory:
        try:
            domains = self._conn.listAllDomains(0)
            version = self._conn.getLibVersion()
        except libvirt.libvirtError as exc:
            raise failure_from(exc, f"listing the domains of {self.endpoint_id}") from None
        # Each running guest's agent is asked within the agent timeout: in parallel, so a few
        # hung agents cost one timeout, not one each.
        facts = [f for f in self._pool.map(self._facts, domains) if f is not None]
        major, minor, micro = version // 1000000, version // 1000 % 1000, version % 1000
        return Inventory(endpoint_id=self.endpoint_id, vcenter_uuid=None,
                         api_version=f"libvirt {major}.{minor}.{micro}", vms=tuple(facts), datastores=())

    def _facts(self, domain: libvirt.virDomain) -> VmFacts | None:
        try:
            state = domain.state()[0]
            xml = domain.XMLDesc(0)
            uuid = domain.UUIDString()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None   # undefined while the list was read
            raise failure_from(exc, f"reading domain {domain.name()}") from None
        return reader.guest_facts(self.endpoint_id, uuid, state, xml, self._volume_path,
                                  lambda: self._ask_agent(domain))

    def _ask_agent(self, domain: libvirt.virDomain) -> reader.AgentAnswer:
        try:
            self._bound_agent(domain)
        except libvirt.libvirtError as exc:
            return reader.AgentAnswer("not_answering", message_of(exc))
        return reader.ask_agent(domain)

    def _volume_path(self, pool: str, volume: str) -> str | None:
        try:
            return self._conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path()
        except libvirt.libvirtError as exc:
            log.info("%s: volume %s/%s: %s", self.endpoint_id, pool, volume, message_of(exc))
            return None

    def vm_states(self, morefs: Iterable[str]) -> dict[str, VmState]:
        found = {}
        for uuid in dict.fromkeys(morefs):
            try:
                state = self._conn.lookupByUUIDString(uuid).state()[0]
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise failure_from(exc, f"reading guest {uuid}") from None
            found[uuid] = VmState(snapshots=(), power_state=reader.power_state(state),
                                  consolidation_needed=False)
        return found

    def all_snapshots(self) -> dict[str, tuple[str, tuple[SnapshotFacts, ...]]]:
        return {}   # this product takes no libvirt snapshots, so none can be left behind

    # --- acting ----------------------------------------------------------------------------

    def _domain(self, uuid: str) -> libvirt.virDomain:
        try:
            return self._conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            raise failure_from(exc, f"guest {uuid}") from None

    def _bound_agent(self, domain: libvirt.virDomain) -> None:
        try:
            domain.agentSetResponseTimeout(self.settings.agent_timeout_s, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            # A driver without agent timeouts (libvirt's test driver): the engine's deadline
            # still bounds the wait.

    def _task(self, uuid: str, what: str, call: Callable[[libvirt.virDomain], object],
              result: Callable[[object], str | None] = lambda _r: None) -> TaskHandle:
        domain = self._domain(uuid)
        label = f"{what} guest '{domain.name()}'"

        def run() -> TaskOutcome:
            try:
                return TaskOutcome(result=result(call(domain)))
            except Exception as exc:  # noqa: BLE001 - every failure leaves as a typed one
                failure = failure_from(exc, label)
                if isinstance(failure, Refused):
                    return TaskOutcome(failure=failure)
                raise failure from None

        return TaskHandle(f"{self.settings.name}-{what}-{next(_ids)}", self._pool.submit(run))

    def start_freeze(self, vm_moref: str) -> TaskHandle:
        def freeze(domain: libvirt.virDomain) -> int:
            self._bound_agent(domain)
            return domain.fsFreeze(None, 0)
        return self._task(vm_moref, "freezing", freeze, str)

    def start_thaw(self, vm_moref: str) -> TaskHandle:
        def thaw(domain: libvirt.virDomain) -> int:
            if not domain.isActive():
                # A guest that stopped is not frozen (its kernel is gone): nothing to thaw.
                raise Gone(f"guest '{domain.name()}' is not running", "not_running")
            self._bound_agent(domain)
            return domain.fsThaw(None, 0)
        return self._task(vm_moref, "thawing", thaw, str)

    def start_pause(self, vm_moref: str) -> TaskHandle:
        return self._task(vm_moref, "pausing", lambda d: d.suspend())

    def start_resume(self, vm_moref: str) -> TaskHandle:
        return self._task(vm_moref, "resuming", lambda d: d.resume())

    def start_power_on(self, vm_moref: str) -> TaskHandle:
        return self._task(vm_moref, "starting", lambda d: d.create())

    def start_power_off(self, vm_moref: str) -> TaskHandle:
        return self._task(vm_moref, "powering off", lambda d: d.destroy())

    def start_suspend(self, vm_moref: str) -> TaskHandle:
        raise Refused("libvirt guests are not suspended by this product: a managed save keeps the "
                      "guest's memory outside its datasets")

    def start_snapshot(self, request: SnapshotRequest) -> TaskHandle:
        raise Refused("libvirt guests are not snapshotted by this product: the ZFS snapshot is the snapshot")

    def start_remove(self, snapshot_moref: str) -> TaskHandle:
        raise Gone("this product takes no libvirt snapshots", "not_ours")

    def shutdown_guest(self, vm_moref: str, timeout: float, poll: float = 0.5) -> bool:
        """Ask the guest to shut down (ACPI, or its agent); True once it is off within ``timeout``."""
        domain = self._domain(vm_moref)
        try:
            domain.shutdown()
        except libvirt.libvirtError as exc:
            raise failure_from(exc, f"shutting guest '{domain.name()}' down") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.vm_states([vm_moref]).get(vm_moref, VmState((), PowerState.OFF, False)).power_state \
                    is PowerState.OFF:
                return True
            time.sleep(poll)
        return False

    # --- waiting -----------------------------------------------------------------------------

    def wait(self, handle: TaskHandle, timeout: float) -> TaskOutcome | None:
        future: concurrent.futures.Future[TaskOutcome] = handle.ref  # type: ignore[assignment]
        try:
            return future.result(timeout=max(0.0, timeout))
        except concurrent.futures.TimeoutError:
            return None

    def cancel(self, handle: TaskHandle) -> None:
        # A libvirt call cannot be taken back; the agent timeout ends it.
        log.info("%s: %s cannot be cancelled; it ends within the agent timeout", self.endpoint_id, handle.id)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        try:
            self._conn.close()
        except libvirt.libvirtError as exc:
            log.info("%s: closing: %s", self.endpoint_id, message_of(exc))


class LibvirtConnector:
    """Opens a LibvirtHypervisor for an endpoint id (``libvirt:<name>``)."""

    def __init__(self, endpoints: Iterable[LibvirtSettings]) -> None:
        self._endpoints = {e.id: e for e in endpoints}

    def endpoint_ids(self) -> list[str]:
        return sorted(self._endpoints)

    def open(self, endpoint_id: str) -> LibvirtHypervisor:
        settings = self._endpoints[endpoint_id]
        _quiet()
        if settings.uri.startswith("qemu:///embed"):
            _ensure_event_loop()
        try:
            return LibvirtHypervisor(settings, libvirt.open(settings.uri))
        except libvirt.libvirtError as exc:
            raise unavailable(exc, endpoint_id) from None
