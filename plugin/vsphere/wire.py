"""PropertyCollector replies read with ElementTree, each field decoded only when it is read.

pyVmomi's deserializer builds a type-checked data object for every element of a reply, in
Python: at 1,000 VMs that was 62% of the engine's CPU (bench/README.md), most of it spent on
device lists of which the inventory reads a few fields. Here the same SOAP request
(serialized by pyVmomi, sent over the session's own connections with its cookie) is parsed
by ElementTree's C parser, and a data object's fields are decoded, with pyVmomi's type
information, when they are first read. Managed object references are real pyVmomi objects;
a fault reply is read by pyVmomi and raised as pyVmomi raises it. Works with the pyvmomi
6.7.1 TrueNAS 25.10 ships and with 8.x/9.x (the stub methods used exist in both).
"""

from __future__ import annotations

import base64
import datetime
import io
import re
import xml.etree.ElementTree as ET
from http.client import HTTPException
from typing import Any

from pyVmomi import Iso8601, SoapAdapter, VmomiSupport

VIM_NS = "urn:vim25"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_VIM = "{" + VIM_NS + "}"
_PREFIXES = re.compile(rb'xmlns:([\w.-]+)="([^"]*)"')

Array = VmomiSupport.Array
ManagedObject = VmomiSupport.ManagedObject
DataObject = VmomiSupport.DataObject


class _Context:
    """What decoding one reply needs: the stub (for references) and its namespace prefixes."""

    __slots__ = ("stub", "prefixes", "_types")

    def __init__(self, stub: Any, prefixes: dict[str, str]) -> None:
        self.stub = stub
        self.prefixes = prefixes
        self._types: dict[str, type | None] = {}

    def resolve(self, qname: str) -> type | None:
        """The pyVmomi type an ``xsi:type`` names, or None if pyVmomi does not know it."""
        try:
            return self._types[qname]
        except KeyError:
            prefix, _, name = qname.rpartition(":")
            found = _wsdl_type(self.prefixes.get(prefix, VIM_NS) if prefix else VIM_NS, name)
            self._types[qname] = found
            return found


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
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._values
        if name in values:
            return values[name]
        field = _field(self.vmomi_type, name)
        if field is None:
            raise AttributeError(f"{self.vmomi_type.__name__} has no field {name!r}")
        declared, array = field
        if array:
            item = declared.Item  # type: ignore[attr-defined]
            value: Any = [decode(e, item, self._ctx) for e in self._el.iterfind(_VIM + name)]
        else:
            found = self._el.find(_VIM + name)
            value = None if found is None else decode(found, declared, self._ctx)
        values[name] = value
        return value

    def __repr__(self) -> str:
        return f"<{self.vmomi_type.__name__} from the wire>"


def type_of(value: Any) -> type:
    """The pyVmomi class of a value, whether pyVmomi or this module decoded it."""
    return value.vmomi_type if isinstance(value, Data) else type(value)


def decode(el: ET.Element, declared: type, ctx: _Context) -> Any:
    """One element as the pyVmomi value of its ``xsi:type`` (else of the declared type)."""
    named = el.get(XSI_TYPE)
    kind = (ctx.resolve(named) if named else None) or declared
    if issubclass(kind, Array):
        item = kind.Item  # type: ignore[attr-defined]
        return [decode(child, item, ctx) for child in el]
    if issubclass(kind, ManagedObject):
        return _managed(el.get("type") or "")(el.text, ctx.stub)
    if issubclass(kind, DataObject):
        return Data(el, kind, ctx)
    text = el.text or ""
    if kind is bool:
        return text in ("true", "1")
    if issubclass(kind, int):
        return int(text)
    if issubclass(kind, float):
        return float(text)
    if kind is datetime.datetime:
        return Iso8601.ParseISO8601(text)
    if kind is VmomiSupport.binary:
        return base64.b64decode(text)
    return text   # strings, enums, paths, type names: pyVmomi gives them as text too


def call(mo: Any, method: str, *args: Any) -> Any:
    """Call ``method`` (its SOAP name) of the managed object ``mo`` with its parameters in
    order: its result, decoded by this module."""
    stub = mo._stub
    info = _method(type(mo), method)
    request = stub.SerializeRequest(mo, info, list(args))
    for modifier in stub.requestModifierList:
        request = modifier(request)
    headers = {"Cookie": stub.cookie, "SOAPAction": stub.versionId,
               "Content-Type": "text/xml; charset=UTF-8"}
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, request, headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, HTTPException):
        conn.close()   # as pyVmomi does: the server may be sick, drop the cached connections
        stub.DropConnections()
        raise
    cookie = response.getheader("Set-Cookie") or response.getheader("set-cookie")
    if cookie:
        stub.cookie = cookie
    if response.status == 500:
        stub.ReturnConnection(conn)
        raise SoapAdapter.SoapResponseDeserializer(stub).Deserialize(io.BytesIO(body), info.result)
    if response.status != 200:
        conn.close()
        raise HTTPException(f"{response.status} {response.reason}")
    stub.ReturnConnection(conn)
    root = ET.fromstring(body)  # noqa: S314 - the endpoint's reply; expat, as pyVmomi parses it
    ctx = _Context(stub, {p.decode(): ns.decode() for p, ns in _PREFIXES.findall(body, 0, 4096)})
    reply = root.find(f".//{_VIM}{info.wsdlName}Response")
    returned = reply.findall(_VIM + "returnval") if reply is not None else []
    result = info.result
    if issubclass(result, Array):
        return [decode(e, result.Item, ctx) for e in returned]
    return decode(returned[0], result, ctx) if returned else None


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
