"""The vSphere adapter (issue 3) against the govmomi simulator on 127.0.0.1.

Certificate trust (pinned, system CAs, insecure), bounded connection steps and typed errors,
ESXi versus vCenter, the inventory in a fixed number of SOAP calls, selection end to end
from a real inventory, and waiting for many tasks through one private collector.
Everything goes through real pyVmomi and a real server; scenarios are shaped through the
vSphere API with tools/rig/inventory.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim, vmodl
from truenas_vmware_coord.domain import selection
from truenas_vmware_coord.domain.model import BlockerKind, Inventory, Mapping
from truenas_vmware_coord.domain.storage import StorageFacts
from truenas_vmware_coord.domain.strategies.options import VssContext
from truenas_vmware_coord.engine.ports import Gone, NoAnswer, Refused, SnapshotRequest, TaskHandle
from truenas_vmware_coord.vsphere import inventory as inventory_reader
from truenas_vmware_coord.vsphere import wire
from truenas_vmware_coord.vsphere.errors import (
    CertificateMismatch,
    CertificateUntrusted,
    LoginRefused,
    TimedOut,
    Unreachable,
    failure_from,
)
from truenas_vmware_coord.vsphere.hypervisor import VSS_CONTEXTS, VsphereHypervisor
from truenas_vmware_coord.vsphere.inventory import read_inventory
from truenas_vmware_coord.vsphere.session import EndpointSettings, Session, negotiate_version, open_session
from truenas_vmware_coord.vsphere.tasks import TaskWatcher
from truenas_vmware_coord.vsphere.tls import VerifyMode, context_for

from tools.rig import inventory as rig
from tools.rig.vcsim import Simulator

StartSim = Callable[..., Simulator]


# --------------------------------------------------------------------------- helpers


def settings_for(sim: Simulator, **overrides: Any) -> EndpointSettings:
    """Pinned to the simulator's own certificate unless overridden."""
    fields: dict[str, Any] = dict(
        id=f"{sim.username}@{sim.host}:{sim.port}", host=sim.host, port=sim.port,
        username=sim.username, verify=VerifyMode.PINNED, fingerprint=sim.sha256,
        connect_timeout=10.0, read_timeout=30.0)
    fields.update(overrides)
    return EndpointSettings(**fields)


@contextlib.contextmanager
def opened(settings: EndpointSettings, password: str) -> Iterator[Session]:
    session = open_session(settings, password)
    try:
        yield session
    finally:
        session.logout()


def endpoint_on(port: int, verify: VerifyMode, timeout: float) -> EndpointSettings:
    """Settings for a port where no simulator runs (the pin is then never compared)."""
    return EndpointSettings(id=f"test@127.0.0.1:{port}", host="127.0.0.1", port=port,
                            username="user", verify=verify, fingerprint="00" * 32,
                            connect_timeout=timeout)


@dataclasses.dataclass
class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    port: int
    accepted: list[socket.socket]


@contextlib.contextmanager
def silent_server() -> Iterator[SilentServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    server = SilentServer(listener.getsockname()[1], [])
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            server.accepted.append(conn)

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        for conn in server.accepted:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def calls_of(sim: Simulator, action: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """Run ``action`` and return its result and the SOAP calls it cost, per method."""
    sim.stats(reset=True)
    result = action()
    return result, sim.stats(reset=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sim(start_vcsim: StartSim) -> Simulator:
    """16 VMs (8 per resource pool), shared by the TLS, login and task tests."""
    return start_vcsim("-vm", "8")


@pytest.fixture(scope="module")
def si(sim: Simulator) -> Iterator[vim.ServiceInstance]:
    """The rig's own session, to shape the scenario (not the code under test)."""
    service = rig.connect_to(sim)
    yield service
    service.content.sessionManager.Logout()


@pytest.fixture()
def hypervisor(sim: Simulator) -> Iterator[VsphereHypervisor]:
    hv = VsphereHypervisor(open_session(settings_for(sim), sim.password))
    yield hv
    hv.close()


# --------------------------------------------------------------------------- certificates


def test_right_pin_is_accepted_in_any_spelling(sim: Simulator) -> None:
    spelling = sim.sha256.replace(":", "").lower()
    with opened(settings_for(sim, fingerprint=spelling), sim.password) as session:
        assert session.is_vcenter is True
        assert session.api_version == "6.5"
        assert session.content.about.apiType == "VirtualCenter"


def test_wrong_pin_is_refused_naming_both_fingerprints(sim: Simulator) -> None:
    wrong = ":".join(["5A"] * 32)
    with pytest.raises(CertificateMismatch) as caught:
        open_session(settings_for(sim, fingerprint=wrong), sim.password)
    err = caught.value
    assert (err.expected, err.presented) == (wrong, sim.sha256)
    assert wrong in str(err) and sim.sha256 in str(err)
    assert err.kind == "certificate_mismatch"


def test_a_changed_certificate_is_refused_on_the_next_connection(
        sim: Simulator, start_vcsim: StartSim) -> None:
    pinned = settings_for(sim)
    with opened(pinned, sim.password):
        pass
    other = start_vcsim("-vm", "1")   # a fresh certificate of its own
    assert other.sha256 != sim.sha256
    moved = dataclasses.replace(pinned, port=other.port)
    with pytest.raises(CertificateMismatch) as caught:
        open_session(moved, other.password)
    assert (caught.value.expected, caught.value.presented) == (sim.sha256, other.sha256)
    # The context built for the pin trusts that certificate alone: a server that swaps its
    # certificate between the check and the connection fails the handshake itself.
    ctx = context_for(pinned.id, sim.host, sim.port, VerifyMode.PINNED, sim.sha256, 5.0)
    with pytest.raises(ssl.SSLCertVerificationError):
        negotiate_version(moved, ctx)
    # The pin that matches still works after a refusal (nothing was switched off).
    with opened(dataclasses.replace(moved, fingerprint=other.sha256), other.password) as session:
        assert session.is_vcenter


def test_system_cas_refuse_the_self_signed_certificate(sim: Simulator) -> None:
    with pytest.raises(CertificateUntrusted) as caught:
        open_session(settings_for(sim, verify=VerifyMode.SYSTEM, fingerprint=None), sim.password)
    assert "does not verify" in caught.value.message


def test_insecure_mode_connects_and_warns(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="truenas_vmware_coord.vsphere")
    settings = settings_for(sim, verify=VerifyMode.INSECURE, fingerprint=None)
    with opened(settings, sim.password) as session:
        assert session.is_vcenter
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification is disabled" in r.getMessage() and settings.id in r.getMessage()
               for r in warnings)


def test_pinned_and_system_modes_do_not_warn(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="truenas_vmware_coord.vsphere")
    with opened(settings_for(sim), sim.password):
        pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- reachability


@pytest.mark.parametrize("verify", [VerifyMode.PINNED, VerifyMode.SYSTEM],
                         ids=["in-certificate-check", "in-version-negotiation"])
def test_a_silent_server_times_out_within_connect_timeout(verify: VerifyMode) -> None:
    timeout = 1.0
    with silent_server() as server:
        started = time.monotonic()
        with pytest.raises(TimedOut) as caught:
            open_session(endpoint_on(server.port, verify, timeout), "pass")
        elapsed = time.monotonic() - started
        assert server.accepted, "the client never reached the silent server"
    assert timeout * 0.9 <= elapsed < timeout + 2
    assert caught.value.kind == "timed_out"


def test_a_slow_login_times_out_within_connect_timeout(start_vcsim: StartSim) -> None:
    slow = start_vcsim("-vm", "1", "-method-delay", "Login:4000")
    started = time.monotonic()
    with pytest.raises(TimedOut, match="logging in"):
        open_session(settings_for(slow, connect_timeout=1.0), slow.password)
    assert time.monotonic() - started < 1.0 + 2


@pytest.mark.parametrize("verify", [VerifyMode.PINNED, VerifyMode.SYSTEM])
def test_a_closed_port_is_unreachable(verify: VerifyMode) -> None:
    started = time.monotonic()
    with pytest.raises(Unreachable) as caught:
        open_session(endpoint_on(closed_port(), verify, 5.0), "pass")
    assert time.monotonic() - started < 2
    assert caught.value.kind == "unreachable"


def test_wrong_password_is_refused_without_echoing_it(sim: Simulator) -> None:
    secret = "not-the-password-7f3a"
    with pytest.raises(LoginRefused) as caught:
        open_session(settings_for(sim), secret)
    assert sim.username in str(caught.value) and secret not in str(caught.value)
    with opened(settings_for(sim), sim.password):   # the right one still works
        pass


def test_wrong_user_is_refused(sim: Simulator) -> None:
    with pytest.raises(LoginRefused):
        open_session(settings_for(sim, username="intruder"), sim.password)


# --------------------------------------------------------------------------- ESXi, scale


def test_esxi_host_has_no_vcenter_identity(start_vcsim: StartSim) -> None:
    esx = start_vcsim("-esx", "-vm", "3")
    with opened(settings_for(esx), esx.password) as session:
        assert session.is_vcenter is False and session.vcenter_uuid is None
        assert session.content.about.apiType == "HostAgent"
        inv = read_inventory(session)
    assert inv.vcenter_uuid is None
    assert len(inv.vms) == 3 and all(vm.vcenter_uuid is None for vm in inv.vms)
    assert all(vm.instance_uuid for vm in inv.vms)
    assert len(inv.hosts) == 1 and inv.datastores


def test_thousand_vms_cost_at_most_five_soap_calls(start_vcsim: StartSim) -> None:
    big = start_vcsim("-vm", "500")
    try:
        with opened(settings_for(big), big.password) as session:
            inv, calls = calls_of(big, lambda: read_inventory(session))
    finally:
        big.stop()
    assert sum(calls.values()) <= 5, calls
    assert calls.get("RetrievePropertiesEx") == 1 and "Fetch" not in calls
    assert calls.get("DestroyView") == 1   # the container view is not left behind
    assert len(inv.vms) == 1000
    assert len({vm.moref for vm in inv.vms}) == 1000
    assert len({vm.instance_uuid for vm in inv.vms}) == 1000
    assert all(vm.files and vm.disks and vm.vmx_path for vm in inv.vms)
    assert all(vm.folder_path == "/DC0/vm" for vm in inv.vms)


# --------------------------------------------------------------------------- selection


NAS = ("10.0.0.9", "nas.local")
NOW = 1_700_000_000.0


@dataclasses.dataclass
class World:
    """A simulator shaped for selection, its inventory read through the adapter."""

    sim: Simulator
    inventory: Inventory
    storage: StorageFacts

    def plan(self, dataset: str, *mappings: tuple[str, str], recursive: bool = False) -> selection.Plan:
        maps = [Mapping(f"m{i}", self.inventory.endpoint_id, ds, dset)
                for i, (ds, dset) in enumerate(mappings)]
        return selection.build_plan(dataset, inventories=[self.inventory], mappings=maps,
                                    storage=self.storage, now=NOW, recursive=recursive)


def planned(plan: selection.Plan) -> dict[str, selection.VmPlan]:
    names = [v.facts.name for v in plan.vms]
    assert len(names) == len(set(names)), f"a VM is planned twice: {names}"
    return {v.facts.name: v for v in plan.vms}


@pytest.fixture(scope="module")
def world(start_vcsim: StartSim) -> Iterator[World]:
    """NFS datastores ds1 and ds10 exported by this NAS (by host name and by address),
    one exported by another NAS under the same path, and LocalDS_0/1 with no proof."""
    with tempfile.TemporaryDirectory(prefix="coord-nfs-") as tmp:
        nfs = {"ds1": "host=nas.local,path=/mnt/tank/ds1",
               "ds10": "host=10.0.0.9,path=/mnt/tank/ds10",
               "foreign": "host=other-nas.example,path=/mnt/tank/ds1"}
        flags = []
        for name, opts in nfs.items():
            (Path(tmp) / name).mkdir()
            flags += ["-nfs", f"{name}={Path(tmp) / name},{opts}"]
        sim = start_vcsim("-vm", "0", "-ds", "2", *flags)
        si = rig.connect_to(sim)
        try:
            # .vmx on LocalDS_0 (not on this NAS), a data disk on ds1.
            span = rig.create_vm(si, "span", "LocalDS_0")
            rig.add_disk(span, "ds1", unit=1)
            rig.create_vm(si, "on-ds1", "ds1")
            rig.create_vm(si, "on-ds10", "ds10")
            rig.create_vm(si, "on-foreign", "foreign")
            both_local = rig.create_vm(si, "two-local", "LocalDS_0")
            rig.add_disk(both_local, "LocalDS_1", unit=1)
            rig.add_passthrough(rig.create_vm(si, "gpu", "ds1"))
            rig.add_disk(rig.create_vm(si, "indep", "ds1"), "ds1", unit=1,
                         disk_mode="independent_persistent")
            rig.create_vm(si, "off", "ds1", power_on=False)
            template = rig.create_vm(si, "tmpl", "ds1", power_on=False)
            template.MarkAsTemplate()
            rig.create_vm(si, "no-tools", "ds1", tools_running=False)
        finally:
            si.content.sessionManager.Logout()
        with opened(settings_for(sim), sim.password) as session:
            inv = read_inventory(session)
        storage = StorageFacts.build(NAS, {"tank": "/mnt/tank", "tank/ds1": "/mnt/tank/ds1",
                                           "tank/ds10": "/mnt/tank/ds10"})
        yield World(sim, inv, storage)
        sim.stop()   # before its NFS directories go away


def test_the_wire_reader_reads_what_pyvmomi_reads(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same retrievals read by ElementTree (the product) and by pyVmomi's deserializer:
    # the same facts, for passthrough, independent and spanning disks, templates, NFS
    # datastores and a snapshot tree two levels deep.
    si = rig.connect_to(world.sim)
    vm = next(v for v in rig.vms(si) if v.name == "indep")
    rig.wait(vm.CreateSnapshot_Task("parent", "d1", False, False))
    rig.wait(vm.CreateSnapshot_Task("child", "d2", False, True))
    hv = VsphereHypervisor(open_session(settings_for(world.sim), world.sim.password))
    try:
        read = (hv.inventory(), hv.vm_states([vm._moId]), hv.all_snapshots())
        with monkeypatch.context() as patch:
            patch.setattr(wire, "Collector", lambda collector: collector)
            patch.setattr(inventory_reader, "Collector", lambda collector: collector)
            assert (hv.inventory(), hv.vm_states([vm._moId]), hv.all_snapshots()) == read
        assert [(s.name, s.depth, s.quiesced) for s in read[1][vm._moId].snapshots] == [
            ("parent", 1, False), ("child", 2, True)]
        assert {v.name for v in read[0].vms} >= {"gpu", "indep", "span", "tmpl"}
    finally:
        hv.close()
        remove_snapshots([vm])
        si.content.sessionManager.Logout()


def test_a_vm_with_one_disk_on_the_mapped_datastore_is_selected(world: World) -> None:
    span = planned(world.plan("tank/ds1"))["span"]
    assert "[ds1] span/span_1.vmdk" in [f.path for f in span.files]
    assert all(f.path.startswith("[ds1] span/") for f in span.files)
    assert span.datasets == ("tank/ds1",) and span.other_datasets == ()
    # Its .vmx is on LocalDS_0, which is not on this NAS: read, not covered.
    assert span.facts.vmx_path == "[LocalDS_0] span/span.vmx"


def test_ds1_and_ds10_are_not_confused(world: World) -> None:
    on_ds1 = planned(world.plan("tank/ds1"))
    on_ds10 = planned(world.plan("tank/ds10"))
    assert "on-ds1" in on_ds1 and "on-ds10" not in on_ds1
    assert set(on_ds10) == {"on-ds10"}
    assert {f.datastore for f in on_ds10["on-ds10"].files} == {
        ds.moref for ds in world.inventory.datastores if ds.name == "ds10"}
    # A mapping that names ds1 (the stock plugin's prefix match would take ds10 too).
    assert "on-ds10" not in planned(world.plan("tank/ds1", ("ds1", "tank/ds1")))


def test_nfs_datastores_are_matched_by_remote_host_and_path(world: World) -> None:
    plan = world.plan("tank", recursive=True)
    by_name = {b.name: b for b in plan.datastores}
    # "foreign" exports the same path from another NAS: not ours, whatever its path.
    assert set(by_name) == {"ds1", "ds10"}
    assert by_name["ds1"].via == "nfs" and by_name["ds1"].datasets == ("tank/ds1",)
    assert "nas.local:/mnt/tank/ds1" in by_name["ds1"].detail        # by host name
    assert by_name["ds10"].via == "nfs" and by_name["ds10"].datasets == ("tank/ds10",)
    assert "10.0.0.9:/mnt/tank/ds10" in by_name["ds10"].detail       # by address
    assert "on-foreign" not in planned(plan)
    # Only a person's mapping can put it in a plan, and the plan says what did not match.
    trusted = world.plan("tank/elsewhere", ("foreign", "tank/elsewhere"))
    assert set(planned(trusted)) == {"on-foreign"}
    assert any("other-nas.example" in w and "not an address of this NAS" in w
               for w in trusted.warnings)


def test_two_datastores_mapped_to_one_dataset_plan_each_vm_once(world: World) -> None:
    plan = world.plan("tank/local", ("LocalDS_0", "tank/local"), ("LocalDS_1", "tank/local"))
    vms = planned(plan)
    two = vms["two-local"]
    assert {f.path.split("]")[0] for f in two.files} == {"[LocalDS_0", "[LocalDS_1"}
    assert two.mapping_ids == ("m0", "m1")
    assert {b.name for b in plan.datastores} == {"LocalDS_0", "LocalDS_1"}
    assert all(b.via == "mapping" for b in plan.datastores)
    assert "span" in vms   # its .vmx is on LocalDS_0


def test_vms_that_limit_snapshots_are_classified_with_reasons(world: World) -> None:
    vms = planned(world.plan("tank/ds1"))
    kinds = {name: {b.kind for b in vms[name].blockers} for name in vms}
    assert kinds["on-ds1"] == set()
    assert vms["on-ds1"].status is selection.VmStatus.NEEDS_ACTION

    gpu = vms["gpu"]
    assert kinds["gpu"] == {BlockerKind.PASSTHROUGH}
    assert "GPU 0" in gpu.blockers[0].detail and "passthrough" in gpu.status_reason

    indep = vms["indep"]
    assert kinds["indep"] == {BlockerKind.INDEPENDENT_DISK}
    assert "independent_persistent" in indep.blockers[0].detail
    assert "[ds1] indep/indep_1.vmdk" in indep.blockers[0].detail

    assert kinds["no-tools"] == {BlockerKind.NO_TOOLS}

    for name, word in (("off", "powered off"), ("tmpl", "template")):
        assert vms[name].status is selection.VmStatus.NOTHING_TO_DO
        assert word in vms[name].status_reason and vms[name].blockers == ()
    assert vms["tmpl"].facts.template is True


# --------------------------------------------------------------------------- tasks


def snapshot_request(vm: vim.VirtualMachine, name: str) -> SnapshotRequest:
    return SnapshotRequest(vm_moref=vm._moId, name=name, description="adapter test",
                           memory=False, quiesce=False)


def remove_snapshots(vms: list[vim.VirtualMachine]) -> None:
    for vm in vms:
        for tree in (vm.snapshot.rootSnapshotList if vm.snapshot else ()):
            rig.wait(tree.snapshot.RemoveSnapshot_Task(removeChildren=True))


def test_many_snapshot_tasks_are_awaited_with_one_collector(
        sim: Simulator, si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    vms = rig.vms(si)[:15]
    assert len(vms) == 15
    handles = [hypervisor.start_snapshot(snapshot_request(vm, "many")) for vm in vms]
    barrier = threading.Barrier(len(handles))

    def wait(handle: TaskHandle) -> Any:
        barrier.wait()   # the engine's workers wait at the same time
        return hypervisor.wait(handle, timeout=30)

    try:
        with concurrent.futures.ThreadPoolExecutor(len(handles)) as pool:
            outcomes, calls = calls_of(sim, lambda: list(pool.map(wait, handles)))
        assert all(o is not None and o.ok for o in outcomes), outcomes
        assert all(str(o.result).startswith("snapshot-") for o in outcomes)
        assert [rig.snapshot_names(vm) for vm in vms] == [["many"]] * 15
        assert calls.get("CreatePropertyCollector") == 1, calls
        # Tasks are added to the watched view in batches: a handful of calls, not 15.
        assert 1 <= calls.get("WaitForUpdatesEx", 0) <= 5, calls
        assert calls.get("ModifyListView", 0) <= 5, calls
        assert "Fetch" not in calls   # no polling of task.info
    finally:
        remove_snapshots(vms)


def test_task_watching_calls_are_bounded_by_time_not_by_tasks(
        sim: Simulator, si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    # 16 tasks handed over one at a time, 20 ms apart: one view change and one wait per
    # interval (0.1 s) at most, however many tasks come, and no wait is ever cancelled.
    vms = rig.vms(si)[:16]

    def paced() -> tuple[list[Any], float]:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(vms)) as pool:
            waits = []
            for vm in vms:
                waits.append(pool.submit(hypervisor.wait, hypervisor.start_snapshot(
                    snapshot_request(vm, "paced")), 30))
                time.sleep(0.02)
            outcomes = [w.result() for w in waits]
        return outcomes, time.monotonic() - started

    try:
        (outcomes, elapsed), calls = calls_of(sim, paced)
        assert all(o is not None and o.ok for o in outcomes), outcomes
        intervals = elapsed / 0.1 + 1
        assert 1 <= calls["ModifyListView"] <= intervals < len(vms), (calls, elapsed)
        assert 1 <= calls["WaitForUpdatesEx"] <= intervals, (calls, elapsed)
        assert "CancelWaitForUpdates" not in calls and "Fetch" not in calls
    finally:
        remove_snapshots(vms)


def test_a_finished_task_is_answered_without_waiting_for_the_next_update_round(
        start_vcsim: StartSim) -> None:
    # govmomi 0.24.2's own WaitForUpdatesEx reports changes in rounds of 250 ms (the rig's
    # build answers within 10 ms); a task already finished when it enters the view is
    # answered at once all the same.
    stock = start_vcsim("-vm", "2", variant="stock-wait")
    si = rig.connect_to(stock)
    vms = rig.vms(si)[:3]
    hv = VsphereHypervisor(open_session(settings_for(stock), stock.password))
    try:
        took = []
        for vm in vms:   # the first also sets the watcher up
            handle = hv.start_snapshot(snapshot_request(vm, "prompt"))
            started = time.monotonic()
            outcome = hv.wait(handle, 30)
            took.append(time.monotonic() - started)
            assert outcome is not None and outcome.ok
        assert max(took[1:]) < 0.2, took
    finally:
        hv.close()
        remove_snapshots(vms)
        si.content.sessionManager.Logout()


def test_close_destroys_the_private_collector(sim: Simulator, si: vim.ServiceInstance) -> None:
    vm = rig.vms(si)[3]
    hv = VsphereHypervisor(open_session(settings_for(sim), sim.password))
    outcome = hv.wait(hv.start_snapshot(snapshot_request(vm, "closing")), 30)
    assert outcome is not None and outcome.ok
    remove_snapshots([vm])
    _, calls = calls_of(sim, hv.close)
    assert calls == {"DestroyView": 1, "DestroyPropertyCollector": 1, "Logout": 1}


def test_an_injected_fault_is_the_outcome(si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    vm = rig.vms(si)[0]
    rig.inject_fault(vm, "CreateSnapshot_Task", "InvalidState")
    try:
        outcome = hypervisor.wait(hypervisor.start_snapshot(snapshot_request(vm, "fault")), 30)
    finally:
        rig.clear_fault(vm, "CreateSnapshot_Task")
    assert outcome is not None and not outcome.ok
    assert isinstance(outcome.failure, Refused) and not isinstance(outcome.failure, Gone)
    assert outcome.failure.fault_type == "InvalidState" and "InvalidState" in outcome.failure.message
    assert vm.snapshot is None


def test_faults_and_lost_answers_leave_the_adapter_as_typed_failures(
        si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    with pytest.raises(Gone):
        hypervisor.start_remove("snapshot-does-not-exist")
    with pytest.raises(Gone):
        hypervisor.start_power_on("vm-does-not-exist")
    assert failure_from(TimeoutError("timed out")).__class__ is NoAnswer
    assert isinstance(failure_from(ConnectionResetError(104, "reset")), NoAnswer)


def test_vss_contexts_map_to_vmware_values() -> None:
    assert VSS_CONTEXTS == {VssContext.APPLICATION: "ctx_auto",
                            VssContext.FILE_SYSTEM: "ctx_file_share_backup"}


def test_a_task_past_its_deadline_returns_none_and_is_cancelled(
        si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    vm = rig.vms(si)[1]
    rig.set_extra_config(vm, {"vcsim.async.CreateSnapshot_Task": "3000"})
    try:
        handle = hypervisor.start_snapshot(snapshot_request(vm, "late"))
        started = time.monotonic()
        assert hypervisor.wait(handle, timeout=0.3) is None
        assert time.monotonic() - started < 1.5
        assert handle.ref.info.state == vim.TaskInfo.State.running
        hypervisor.cancel(handle)
        assert handle.ref.info.state == vim.TaskInfo.State.error
        assert isinstance(handle.ref.info.error, vmodl.fault.RequestCanceled)
        assert vm.snapshot is None
        # The watcher still serves other tasks after a forgotten one, and cancelling a
        # finished task is harmless.
        other = rig.vms(si)[2]
        done = hypervisor.start_snapshot(snapshot_request(other, "after"))
        outcome = hypervisor.wait(done, 30)
        assert outcome is not None and outcome.ok
        hypervisor.cancel(done)
        assert done.ref.info.state == vim.TaskInfo.State.success
        remove_snapshots([other])
    finally:
        rig.set_extra_config(vm, {"vcsim.async.CreateSnapshot_Task": ""})


def test_a_task_started_during_a_long_wait_joins_at_once(
        si: vim.ServiceInstance, hypervisor: VsphereHypervisor) -> None:
    # vCenter's tasks run for seconds: the watcher is then inside a long WaitForUpdatesEx
    # when the next task starts, which must not wait for that call to end.
    running, quick = rig.vms(si)[4], rig.vms(si)[5]
    rig.set_extra_config(running, {"vcsim.async.CreateSnapshot_Task": "4000"})
    rig.set_extra_config(quick, {"vcsim.async.CreateSnapshot_Task": "100"})
    watcher = TaskWatcher(hypervisor.session, max_wait_seconds=10)
    try:
        slow = hypervisor.start_snapshot(snapshot_request(running, "slow"))
        slow_outcome = watcher.watch(slow.ref)
        time.sleep(0.5)   # the watcher is now inside a wait of up to 10 s
        started = time.monotonic()
        outcome = watcher.watch(hypervisor.start_snapshot(snapshot_request(quick, "quick")).ref).result(15)
        assert outcome.ok
        assert time.monotonic() - started < 1.0, "the new task waited for the old wait to end"
        assert slow_outcome.result(15).ok
        remove_snapshots([quick, running])
    finally:
        watcher.close()
        for vm in (running, quick):
            rig.set_extra_config(vm, {"vcsim.async.CreateSnapshot_Task": ""})
