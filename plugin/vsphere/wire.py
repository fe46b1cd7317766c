"""PropertyCollector replies read with ElementTree, each field decoded only when it is read.

pyVmomi's deserializer builds a type-checked data object for every element of a reply, in
Python: at 1,000 VMs that was 62% of the engine's CPU (bench/README.md), most of it spent on
device lists of which the inventory reads a few fields. Here the same SOAP request
(serialized by pyVmomi; for the snapshot calls once per run, see ``Template``) is sent on
the session's own pooled connections with its cookie (``exchange``, not ``http.client``),
its reply parsed by ElementTree's C parser, and a data object's fields are decoded, with
pyVmomi's type information, when they are first read. Managed object references are real
pyVmomi objects; a fault reply is read by pyVmomi and raised as pyVmomi raises it. Works
with the pyvmomi 6.7.1 TrueNAS 25.10 ships and with 8.x/9.x (the stub methods used exist
in both).
"""

from __future__ import annotations

import base64
import datetime
import gc
import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.client import HTTPException
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from pyVmomi import Iso8601, SoapAdapter, VmomiSupport

from . import exchange

VIM_NS = "urn:vim25"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_VIM = "{" + VIM_NS + "}"
_SOAP_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
_PREFIXES = re.compile(rb'xmlns:([\w.-]+)="([^"]*)"')

Array = VmomiSupport.Array
ManagedObject = VmomiSupport.ManagedObject
DataObject = VmomiSupport.DataObject


class _Context:
    """What decoding one reply needs: the stub (for references) and the reply's namespace
    prefixes, read from its start when an ``xsi:type`` first names one."""

    __slots__ = ("stub", "_start", "_prefixes", "_types")

    def __init__(self, stub: Any, body: bytes) -> None:
        self.stub = stub
        self._start = body[:4096]
        self._prefixes: dict[str, str] | None = None
        self._types: dict[str, type | None] = {}

    def resolve(self, qname: str) -> type | None:
        """The pyVmomi type an ``xsi:type`` names, or None if pyVmomi does not know it."""
        try:
            return self._types[qname]
        except KeyError:
            prefix, _, name = qname.rpartition(":")
            found = _wsdl_type(self._namespace(prefix) if prefix else VIM_NS, name)
            self._types[qname] = found
            return found

    def _namespace(self, prefix: str) -> str:
        if self._prefixes is None:
            self._prefixes = {p.decode(): ns.decode() for p, ns in _PREFIXES.findall(self._start)}
        return self._prefixes.get(prefix, VIM_NS)


_TYPES: dict[tuple[str, str], type | None] = {}
_FIELDS: dict[tuple[type, str], tuple[type, bool] | None] = {}
_MANAGED: dict[str, type] = {}
_METHODS: dict[tuple[type, str], Any] = {}


def _wsdl_type(ns: str, name: str) -> type | None:
    key = (ns, name)
    if key not in _TYPES:
        if name == "ManagedObjectReference":
            found: type | None = ManagedObject
        elif name == "ArrayOfManagedObjectReference":
            found = ManagedObject.Array
        else:
            try:
                found = VmomiSupport.GetWsdlType(ns, name)
            except KeyError:
                found = None   # a type newer than this pyVmomi: read as the declared type
        _TYPES[key] = found
    return _TYPES[key]


def _field(cls: type, name: str) -> tuple[type, bool] | None:
    """(declared type, is an array) of a data object's field, or None if it has none."""
    key = (cls, name)
    if key not in _FIELDS:
        try:
            declared = cls._GetPropertyInfo(name).type  # type: ignore[attr-defined]
        except AttributeError:
            _FIELDS[key] = None
        else:
            _FIELDS[key] = (declared, issubclass(declared, Array))
    return _FIELDS[key]


def _method(cls: type, wsdl_name: str) -> Any:
    """pyVmomi's description of a method, by its SOAP name (pyVmomi keys them otherwise)."""
    key = (cls, wsdl_name)
    if key not in _METHODS:
        for kind in cls.__mro__:
            found = [m for m in getattr(kind, "_methodInfo", {}).values() if m.wsdlName == wsdl_name]
            if found:
                _METHODS[key] = found[0]
                break
        else:
            raise AttributeError(f"{cls.__name__} has no method {wsdl_name}")
    return _METHODS[key]


def _managed(type_name: str) -> type:
    if type_name not in _MANAGED:
        found = _wsdl_type(VIM_NS, type_name)
        _MANAGED[type_name] = found if found is not None else ManagedObject
    return _MANAGED[type_name]


class Data:
    """A data object read from its element: a field is decoded when it is first read, as
    pyVmomi would (an unset array reads as [], an unset field as None, a field the type does
    not have raises AttributeError). ``vmomi_type`` is the pyVmomi class (see ``type_of``)."""

    __slots__ = ("_el", "vmomi_type", "_ctx", "_values")

    def __init__(self, el: ET.Element, cls: type, ctx: _Context) -> None:
        self._el = el
        self.vmomi_type = cls
        self._ctx = ctx
        self._values: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name[:1] == "_":
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        field = _FIELDS.get((self.vmomi_type, name)) or _field(self.vmomi_type, name)
        if field is None:
            raise AttributeError(f"{self.vmomi_type.__name__} has no field {name!r}")
        declared, array = field
        if array:
            item = declared.Item  # type: ignore[attr-defined]
            value: Any = [decode(e, item, self._ctx) for e in self._el.findall(_VIM + name)]
        else:
            found = self._el.find(_VIM + name)
            value = None if found is None else decode(found, declared, self._ctx)
        values[name] = value
        return value

    def __repr__(self) -> str:
        return f"<{self.vmomi_type.__name__} from the wire>"


def properties(obj: Any, field: str = "propSet") -> dict[str, Any]:
    """``{name: val}`` of an ObjectContent's ``propSet`` (or an ObjectUpdate's ``changeSet``),
    read straight from the elements when this module decoded it: no data object per
    property (19 per VM in the inventory)."""
    if not isinstance(obj, Data):
        return {p.name: p.val for p in getattr(obj, field) or ()}
    ctx = obj._ctx
    out = {}
    for el in obj._el.findall(_VIM + field):
        value = el.find(_VIM + "val")
        out[el.findtext(_VIM + "name") or ""] = None if value is None else decode(value, object, ctx)
    return out


def type_of(value: Any) -> type:
    """The pyVmomi class of a value, whether pyVmomi or this module decoded it."""
    return value.vmomi_type if isinstance(value, Data) else type(value)


def decode(el: ET.Element, declared: type, ctx: _Context) -> Any:
    """One element as the pyVmomi value of its ``xsi:type`` (else of the declared type)."""
    named = el.get(XSI_TYPE)
    kind = (ctx.resolve(named) if named else None) or declared
    reader = _READERS.get(kind) or _reader(kind)
    return reader(el, kind, ctx)


Reader = Callable[[ET.Element, type, _Context], Any]


def _array(el: ET.Element, kind: type, ctx: _Context) -> list[Any]:
    item = kind.Item  # type: ignore[attr-defined]
    return [decode(child, item, ctx) for child in el]


def _reference(el: ET.Element, kind: type, ctx: _Context) -> Any:
    return _managed(el.get("type") or "")(el.text, ctx.stub)


def _text(convert: Callable[[str], Any]) -> Reader:
    return lambda el, kind, ctx: convert(el.text or "")


_READERS: dict[type, Reader] = {}


def _reader(kind: type) -> Reader:
    """How a value of ``kind`` is read (found once per type: a reply has thousands)."""
    if issubclass(kind, Array):
        found: Reader = _array
    elif issubclass(kind, ManagedObject):
        found = _reference
    elif issubclass(kind, DataObject):
        found = Data
    elif kind is bool:
        found = _text(lambda text: text in ("true", "1"))
    elif issubclass(kind, int):
        found = _text(int)
    elif issubclass(kind, float):
        found = _text(float)
    elif kind is datetime.datetime:
        found = _text(Iso8601.ParseISO8601)
    elif kind is VmomiSupport.binary:
        found = _text(base64.b64decode)
    else:   # strings, enums, paths, type names: pyVmomi gives them as text too
        found = _text(str)
    _READERS[kind] = found
    return found


def call(mo: Any, method: str, *args: Any) -> Any:
    """Call ``method`` (its SOAP name) of the managed object ``mo`` with its parameters in
    order: its result, decoded by this module."""
    stub = mo._stub
    info = _method(type(mo), method)
    return _invoke(stub, info, stub.SerializeRequest(mo, info, list(args)))


class Template:
    """One method with the same arguments for many objects of one type, serialized once.

    Every VM of a run gets the same create (name, description, quiesce spec) and the same
    remove; serializing each with pyVmomi cost 0.2 ms of CPU per VM at 1,000 VMs
    (bench/README.md). Only ``_this`` differs, so the request is serialized once around a
    stand-in and each object's id put in its place. (pyVmomi's request context, which the
    product does not use, is the one at creation.)
    """

    _STAND_IN = "coord-template-object"

    def __init__(self, stub: Any, cls: type, method: str, *args: Any) -> None:
        self._stub = stub
        self._info = _method(cls, method)
        request = stub.SerializeRequest(cls(self._STAND_IN, stub), self._info, list(args))
        mark = f">{self._STAND_IN}<".encode()
        if request.count(mark) != 1:
            raise ValueError(f"{method}: the stand-in for the object is not unique in the request")
        head, _, tail = request.partition(mark)
        self._head, self._tail = head + b">", b"<" + tail

    def call(self, moref: str) -> Any:
        """The method called on the object ``moref``: its result, decoded by this module."""
        return _invoke(self._stub, self._info, self._head + xml_escape(moref).encode() + self._tail)


def _invoke(stub: Any, info: Any, request: bytes) -> Any:
    for modifier in stub.requestModifierList:
        request = modifier(request)
    body = _post(stub, request if isinstance(request, bytes) else request.encode("utf-8"), info)
    root = ET.fromstring(body)  # noqa: S314 - the endpoint's reply; expat, as pyVmomi parses it
    ctx = _Context(stub, body)
    soap_body = root.find(_SOAP_BODY)
    reply = soap_body.find(f"{_VIM}{info.wsdlName}Response") if soap_body is not None else None
    returned = reply.findall(_VIM + "returnval") if reply is not None else []
    result = info.result
    if issubclass(result, Array):
        return [decode(e, result.Item, ctx) for e in returned]
    return decode(returned[0], result, ctx) if returned else None


def _post(stub: Any, request: bytes, info: Any) -> bytes:
    """The body of a 200 reply to ``request``, on one of the stub's connections with its
    cookie; a fault reply raised as pyVmomi raises it."""
    conn = stub.GetConnection()
    try:
        if conn.sock is None:
            conn.connect()   # what http.client does with a connection not open yet (pyvmomi 6.7.1's)
        head = exchange.request_head(stub.path, _host(conn), {
            "Accept-Encoding": "identity", "Cookie": stub.cookie, "SOAPAction": stub.versionId,
            "Content-Type": "text/xml; charset=UTF-8"}, len(request))
        reply = exchange.exchange(conn.sock, head + request)
    except (OSError, HTTPException):
        conn.close()   # as pyVmomi does: the server may be sick, drop the cached connections
        stub.DropConnections()
        raise
    cookie = reply.headers.get("set-cookie")
    if cookie:
        stub.cookie = cookie
    if reply.keep_alive and reply.status in (200, 500):
        stub.ReturnConnection(conn)
    else:
        conn.close()
    if reply.status == 500:
        raise SoapAdapter.SoapResponseDeserializer(stub).Deserialize(io.BytesIO(reply.body), info.result)
    if reply.status != 200:
        raise HTTPException(f"{reply.status} {reply.reason}")
    return reply.body


def _host(conn: Any) -> str:
    """The Host header http.client would send for this connection."""
    host = f"[{conn.host}]" if ":" in conn.host else conn.host
    return host if conn.port == conn.default_port else f"{host}:{conn.port}"


class PausedGc:
    """While one is entered, the cyclic garbage collector does not run (it resumes when the
    last one leaves, if it ran before the first came). Entries nest and overlap across
    threads.

    A large reply's element tree lives while its fields are read (~200 elements per VM in
    the inventory), and each full collection meanwhile walks all of it: at 1,000 VMs four
    such collections took ~130 ms of the inventory's ~500 ms of CPU. A reply's tree and what
    is read from it hold no reference cycles, so collecting later loses nothing."""

    _lock = threading.Lock()
    _depth = 0
    _resume = False

    def __enter__(self) -> None:
        with PausedGc._lock:
            if PausedGc._depth == 0:
                PausedGc._resume = gc.isenabled()
                gc.disable()
            PausedGc._depth += 1

    def __exit__(self, *exc: object) -> None:
        with PausedGc._lock:
            PausedGc._depth -= 1
            if PausedGc._depth == 0 and PausedGc._resume:
                gc.enable()


class Collector:
    """A PropertyCollector whose retrievals and waits are read by this module (the same
    calls; only the reading differs)."""

    def __init__(self, collector: Any) -> None:
        self._collector = collector

    def RetrievePropertiesEx(self, specSet: list[Any], options: Any) -> Any:  # noqa: N802, N803 - vSphere's names
        return call(self._collector, "RetrievePropertiesEx", specSet, options)

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:  # noqa: N802
        return call(self._collector, "ContinueRetrievePropertiesEx", token)

    def CancelRetrievePropertiesEx(self, token: str) -> None:  # noqa: N802
        call(self._collector, "CancelRetrievePropertiesEx", token)

    def WaitForUpdatesEx(self, version: str, options: Any) -> Any:  # noqa: N802
        return call(self._collector, "WaitForUpdatesEx", version, options)
