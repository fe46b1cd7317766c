"""wire.py without a server: request templates, the SOAP POST on a pooled connection, and
the collector pause around large replies. (tests/integration/test_vsphere_adapter.py reads
the same replies with pyVmomi and with this module against the simulator.)"""

from __future__ import annotations

import gc
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.client import HTTPException

import pytest
from pyVmomi import SoapStubAdapter, vim, vmodl
from test_exchange import ScriptedSocket, sized
from truenas_vmware_coord.vsphere import wire

TASK_REPLY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope '
              b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
              b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
              b'<RemoveSnapshot_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval>'
              b'</RemoveSnapshot_TaskResponse></soapenv:Body></soapenv:Envelope>')
FAULT_REPLY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope '
               b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
               b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
               b'<faultcode>ServerFaultCode</faultcode><faultstring>gone</faultstring><detail>'
               b'<ManagedObjectNotFoundFault xmlns="urn:vim25" xsi:type="ManagedObjectNotFound">'
               b'<obj type="VirtualMachineSnapshot">snapshot-9</obj></ManagedObjectNotFoundFault>'
               b'</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>')


class Connection:
    """A pooled connection whose socket answers with one scripted reply."""

    host, port, default_port = "vc.example", 443, 443

    def __init__(self, reply: bytes | OSError, connected: bool = True) -> None:
        self._reply = reply
        self.sock: ScriptedSocket | Failing | None = self._socket() if connected else None
        self.closed = False

    def _socket(self) -> ScriptedSocket | Failing:
        return Failing(self._reply) if isinstance(self._reply, OSError) else ScriptedSocket(self._reply)

    def connect(self) -> None:
        self.sock = self._socket()

    def close(self) -> None:
        self.closed, self.sock = True, None


class Failing(ScriptedSocket):
    def __init__(self, error: OSError) -> None:
        super().__init__(b"")
        self._error = error

    def recv(self, size: int, /) -> bytes:
        raise self._error


class Pool:
    """The stub's connection pool, recorded."""

    def __init__(self, stub: SoapStubAdapter, conn: Connection) -> None:
        self.conn = conn
        self.returned: list[Connection] = []
        self.dropped = 0
        stub.GetConnection = lambda: conn
        stub.ReturnConnection = self.returned.append
        stub.DropConnections = self._drop

    def _drop(self) -> None:
        self.dropped += 1


@pytest.fixture
def stub() -> SoapStubAdapter:
    stub = SoapStubAdapter(host="vc.example", port=443, version="vim.version.version11")
    stub.cookie = 'vmware_soap_session="old"'
    return stub


def test_a_template_sends_what_pyvmomi_serializes_for_each_object(stub: SoapStubAdapter) -> None:
    spec = vim.vm.GuestQuiesceSpec(timeout=5)
    args = ("coord-<run>", "taken & removed", False, spec)
    template = wire.Template(stub, vim.VirtualMachine, "CreateSnapshotEx_Task", *args)
    info = wire._method(vim.VirtualMachine, "CreateSnapshotEx_Task")
    sent = []
    for moref in ("vm-42", "vm-43", "vm-1&<2>"):
        pool = Pool(stub, Connection(sized(TASK_REPLY.replace(b"RemoveSnapshot", b"CreateSnapshotEx"))))
        task = template.call(moref)
        assert (type(task), task._moId) == (vim.Task, "task-7")
        sent.append(pool.conn.sock.sent[0].partition(b"\r\n\r\n")[2] if pool.conn.sock else b"")
    for moref, request in zip(("vm-42", "vm-43"), sent, strict=False):
        assert request == stub.SerializeRequest(vim.VirtualMachine(moref, stub), info, list(args))
    # pyVmomi writes an id as it is; the template escapes it, so the request stays XML.
    this = ET.fromstring(sent[2]).find(".//{urn:vim25}_this")  # noqa: S314 - built here
    assert this is not None and this.text == "vm-1&<2>"


def test_a_template_refuses_arguments_that_look_like_its_stand_in(stub: SoapStubAdapter) -> None:
    with pytest.raises(ValueError, match="not unique"):
        wire.Template(stub, vim.VirtualMachine, "CreateSnapshot_Task", wire.Template._STAND_IN, "",
                      False, False)


def test_a_reply_is_read_on_a_pooled_connection_which_goes_back(stub: SoapStubAdapter) -> None:
    pool = Pool(stub, Connection(sized(TASK_REPLY, 'Set-Cookie: vmware_soap_session="new"')))
    task = wire.Template(stub, vim.vm.Snapshot, "RemoveSnapshot_Task", False).call("snapshot-9")
    assert task._moId == "task-7" and task._stub is stub
    head = pool.conn.sock.sent[0].split(b"\r\n\r\n")[0].decode() if pool.conn.sock else ""
    assert head.splitlines()[:2] == ["POST /sdk HTTP/1.1", "Host: vc.example"]
    assert f"SOAPAction: {stub.versionId}" in head and 'Cookie: vmware_soap_session="old"' in head
    assert stub.cookie == 'vmware_soap_session="new"'
    assert pool.returned == [pool.conn] and not pool.conn.closed


def test_a_connection_not_open_yet_is_opened_and_one_the_server_closes_is_not_kept(
        stub: SoapStubAdapter) -> None:
    pool = Pool(stub, Connection(sized(TASK_REPLY, "Connection: close"), connected=False))
    task = wire.Template(stub, vim.vm.Snapshot, "RemoveSnapshot_Task", False).call("snapshot-9")
    assert task._moId == "task-7"
    assert pool.conn.closed and pool.returned == []


def test_a_fault_reply_is_raised_as_pyvmomi_raises_it(stub: SoapStubAdapter) -> None:
    pool = Pool(stub, Connection(sized(FAULT_REPLY, status="500 Internal Server Error")))
    with pytest.raises(vmodl.fault.ManagedObjectNotFound) as raised:
        wire.Template(stub, vim.vm.Snapshot, "RemoveSnapshot_Task", False).call("snapshot-9")
    assert raised.value.obj._moId == "snapshot-9"
    assert pool.returned == [pool.conn]   # a fault is an answer: the connection is fine


@pytest.mark.parametrize("reply", [sized(b"busy", status="503 Service Unavailable"),
                                   ConnectionResetError(104, "reset"), b"HTTP/1.1 200 OK\r\nContent-Len"])
def test_a_lost_or_unexpected_answer_closes_the_connection(stub: SoapStubAdapter,
                                                           reply: bytes | OSError) -> None:
    pool = Pool(stub, Connection(reply))
    with pytest.raises((OSError, HTTPException)):
        wire.Template(stub, vim.vm.Snapshot, "RemoveSnapshot_Task", False).call("snapshot-9")
    assert pool.conn.closed and pool.returned == []
    # A socket error or a broken reply: the server may be sick, every cached connection goes.
    assert pool.dropped == (0 if isinstance(reply, bytes) and b"503" in reply else 1)


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.usefixtures("collecting")
def test_the_collector_pauses_while_any_reader_is_inside_and_resumes_after_the_last() -> None:
    entered, leave = threading.Event(), threading.Event()

    def reader() -> None:
        with wire.PausedGc():
            entered.set()
            leave.wait(5)

    other = threading.Thread(target=reader)
    with wire.PausedGc():
        assert not gc.isenabled()
        other.start()
        assert entered.wait(5)
        with wire.PausedGc():   # nested
            assert not gc.isenabled()
    assert not gc.isenabled()   # the other reader is still inside
    leave.set()
    other.join(5)
    assert gc.isenabled()


@pytest.mark.usefixtures("collecting")
def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with wire.PausedGc():
        pass
    assert not gc.isenabled()


def test_a_session_kept_for_many_runs_keeps_a_bounded_number_of_templates(stub: SoapStubAdapter) -> None:
    from types import SimpleNamespace

    from truenas_vmware_coord.vsphere.hypervisor import MAX_TEMPLATES, VsphereHypervisor

    hv = VsphereHypervisor.__new__(VsphereHypervisor)   # only what _template uses
    hv._templates, hv.session = {}, SimpleNamespace(stub=stub)
    for run in range(3 * MAX_TEMPLATES):   # each run's snapshot name is another key
        template = hv._template(vim.vm.Snapshot, "RemoveSnapshot_Task", False, key=run)
        assert hv._template(vim.vm.Snapshot, "RemoveSnapshot_Task", False, key=run) is template
    assert len(hv._templates) <= MAX_TEMPLATES
