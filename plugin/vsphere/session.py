"""One authenticated vSphere session per endpoint per run.

Connecting is done in three bounded steps, each with a timeout: the certificate check
(see tls.py), the API version negotiation over our own HTTPS request (``SmartConnect``'s
probe has no timeout and blocks forever against a silent server), and ``Connect`` with
that version and ``httpConnectionTimeout`` so every later read is bounded too.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import socket
import ssl
import xml.etree.ElementTree as ET
from typing import Any

from pyVmomi import SoapStubAdapter, VmomiSupport, vim

from ..domain.model import Endpoint
from .errors import (
    ApiTooOld,
    CertificateUntrusted,
    LoginRefused,
    ProtocolError,
    TimedOut,
    Unreachable,
    VsphereError,
)
from .tls import VerifyMode, context_for

log = logging.getLogger(__name__)

MINIMUM_API = "6.0"  # ContainerView, WaitForUpdatesEx and layoutEx are all older than this


@dataclasses.dataclass(frozen=True)
class EndpointSettings:
    """How to reach one vCenter or ESXi host. The password is passed separately."""

    id: str
    host: str
    port: int = 443
    username: str = ""
    verify: VerifyMode = VerifyMode.SYSTEM
    fingerprint: str | None = None
    ca_certificate: str | None = None
    check_hostname: bool | None = None
    connect_timeout: float = 10.0   # TCP connect + TLS + version negotiation + login
    read_timeout: float = 60.0      # any single SOAP reply
    pool_size: int = 64             # HTTP connections kept for parallel calls

    @staticmethod
    def from_document(doc: dict[str, Any]) -> EndpointSettings:
        """From a document valid against schemas/endpoint.json."""
        tls = doc.get("tls") or {}
        if tls.get("skip_verification"):
            verify = VerifyMode.INSECURE
        elif tls.get("sha256_fingerprint"):
            verify = VerifyMode.PINNED
        elif tls.get("ca_certificate"):
            verify = VerifyMode.CA
        else:
            verify = VerifyMode.SYSTEM
        port = int(doc.get("port", 443))
        return EndpointSettings(
            id=doc.get("id") or Endpoint.make_id(doc["host"], port, doc["username"]),
            host=doc["host"], port=port, username=doc["username"], verify=verify,
            fingerprint=tls.get("sha256_fingerprint"), ca_certificate=tls.get("ca_certificate"),
            check_hostname=tls.get("check_hostname"),
            connect_timeout=float(doc.get("connect_timeout_seconds", 10)),
            read_timeout=float(doc.get("read_timeout_seconds", 60)))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _known_versions() -> dict[str, str]:
    """pyVmomi's vim25 API versions: "6.5" -> "vim.version.version11"."""
    known = {}
    for key, version_id in VmomiSupport.versionMap.items():
        if key.startswith("vim25/"):
            known[key.split("/", 1)[1]] = version_id
    return known


def choose_version(server_versions: list[str]) -> tuple[str, str]:
    """The newest API version both sides speak: (api version, pyVmomi version id)."""
    known = _known_versions()
    common = [v for v in server_versions if v in known]
    newest_server = max(server_versions, key=_version_tuple) if server_versions else ""
    if not common:
        # A server newer than this pyVmomi: speak pyVmomi's newest, which it also accepts.
        newest_known = max(known, key=_version_tuple)
        if newest_server and _version_tuple(newest_server) > _version_tuple(newest_known):
            return newest_known, known[newest_known]
        raise ApiTooOld("", f"no API version in common (server offers {server_versions})")
    best = max(common, key=_version_tuple)
    return best, known[best]


def _parse_service_versions(xml_text: str) -> list[str]:
    # Read only after the TLS check: the document comes from the verified server.
    root = ET.fromstring(xml_text)  # noqa: S314
    versions: list[str] = []
    for namespace in root.findall("namespace"):
        if namespace.findtext("name") != "urn:vim25":
            continue
        versions.append((namespace.findtext("version") or "").strip())
        versions += [(v.text or "").strip() for v in namespace.findall("priorVersions/version")]
    return [v for v in versions if v]


def negotiate_version(settings: EndpointSettings, ctx: ssl.SSLContext) -> tuple[str, str]:
    """Ask the server which API versions it speaks, within the connect timeout."""
    conn = http.client.HTTPSConnection(settings.host, settings.port, context=ctx,
                                       timeout=settings.connect_timeout)
    try:
        conn.request("GET", "/sdk/vimServiceVersions.xml")
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        if resp.status != 200:
            raise ProtocolError(settings.id, f"/sdk/vimServiceVersions.xml answered HTTP {resp.status}")
    finally:
        conn.close()
    try:
        offered = _parse_service_versions(body)
    except ET.ParseError as exc:
        raise ProtocolError(settings.id, "the server's API version list is not XML") from exc
    try:
        api, version_id = choose_version(offered)
    except ApiTooOld as exc:
        raise ApiTooOld(settings.id, exc.message) from None
    if _version_tuple(api) < _version_tuple(MINIMUM_API):
        raise ApiTooOld(settings.id, f"API {api} is older than the {MINIMUM_API} this product needs")
    return api, version_id


def _translate(settings: EndpointSettings, exc: BaseException, step: str) -> VsphereError:
    """Map a low-level failure to a typed, secret-free error."""
    if isinstance(exc, VsphereError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateUntrusted(settings.id, f"the certificate does not verify ({exc.verify_message})")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return TimedOut(settings.id, f"no answer within the timeout while {step}")
    if isinstance(exc, vim.fault.InvalidLogin):
        return LoginRefused(settings.id, f"login refused for user '{settings.username}'")
    if isinstance(exc, ssl.SSLError):
        return Unreachable(settings.id, f"TLS failed while {step}: {exc.reason or exc}")
    if isinstance(exc, (ConnectionError, OSError)):
        reason = getattr(exc, "strerror", None) or exc
        return Unreachable(settings.id, f"cannot connect while {step}: {reason}")
    if isinstance(exc, (http.client.HTTPException, ET.ParseError)):
        return ProtocolError(settings.id, f"unexpected answer while {step}")
    return VsphereError(settings.id, f"{type(exc).__name__} while {step}")


class Session:
    """A logged-in pyVmomi session and what was learnt about the endpoint."""

    def __init__(self, settings: EndpointSettings, si: vim.ServiceInstance, content: Any,
                 api_version: str) -> None:
        self.settings = settings
        self.si = si
        self.content = content  # fetched once at login; never re-read
        self.api_version = api_version
        self.is_vcenter = self.content.about.apiType == "VirtualCenter"
        # Only a vCenter has an instance identity; an ESXi host reports none (or "").
        self.vcenter_uuid: str | None = (self.content.about.instanceUuid or None
                                         if self.is_vcenter else None)
        # Learnt once per endpoint, not per VM: does CreateSnapshotEx_Task exist here?
        self.create_snapshot_ex: bool | None = (
            None if _version_tuple(api_version) >= (6, 5) else False)

    @property
    def endpoint_id(self) -> str:
        return self.settings.id

    @property
    def stub(self) -> Any:
        return self.si._stub

    def logout(self) -> None:
        try:
            self.content.sessionManager.Logout()
        except Exception as exc:  # noqa: BLE001 - logging out is best effort
            log.info("%s: logout failed: %s", self.settings.id, type(exc).__name__)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.logout()


def _login(settings: EndpointSettings, password: str, version_id: str,
           ctx: ssl.SSLContext) -> tuple[vim.ServiceInstance, Any]:
    """What ``pyVim.connect.Connect`` does, with every connection bounded by the connect
    timeout: its ``httpConnectionTimeout`` is missing from the pyvmomi 6.7.1 TrueNAS 25.10
    ships, while the stub's ``schemeArgs`` reach every connection in 6.7.1 and in 8.x."""
    stub = SoapStubAdapter(host=settings.host, port=settings.port, version=version_id, sslContext=ctx,
                           connectionPoolTimeout=-1)
    stub.schemeArgs["timeout"] = settings.connect_timeout
    si = vim.ServiceInstance("ServiceInstance", stub)
    # RetrieveContent, not the .content property: in pyvmomi 6.7.1 that is a property read
    # (a PropertyCollector call, which needs a session already), in 8.x a cached one.
    content = si.RetrieveContent()
    content.sessionManager.Login(settings.username, password, None)
    return si, content


def open_session(settings: EndpointSettings, password: str) -> Session:
    """Verify, negotiate and log in; every step bounded by the endpoint's timeouts."""
    step = "checking the certificate"
    try:
        ctx = context_for(settings.id, settings.host, settings.port, settings.verify,
                          settings.fingerprint, settings.connect_timeout,
                          settings.ca_certificate, settings.check_hostname)
        step = "negotiating the API version"
        api, version_id = negotiate_version(settings, ctx)
        step = "logging in"
        si, content = _login(settings, password, version_id, ctx)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error
        raise _translate(settings, exc, step) from None
    # Logged in: from now on each SOAP reply may take up to read_timeout, and enough
    # connections are kept for the run's parallel calls (pyVmomi keeps 5 by default).
    stub = si._stub
    stub.schemeArgs["timeout"] = settings.read_timeout
    stub.poolSize = max(stub.poolSize, settings.pool_size)
    for conn, _ in list(stub.pool):
        if conn.sock is not None:
            conn.sock.settimeout(settings.read_timeout)
    log.info("%s: logged in (API %s)", settings.id, api)
    return Session(settings, si, content, api)
