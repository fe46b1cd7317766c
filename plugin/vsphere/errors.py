"""Typed, secret-free errors for everything that can go wrong talking to vSphere, and the
translation of pyVmomi's faults into the engine's typed failures (``engine.ports``).

Every message names the endpoint and says what happened in words an admin can act on;
none carries a password, a session cookie or a raw fault dump.
"""

from __future__ import annotations

from ..engine.ports import Gone, HypervisorFailure, NoAnswer, Refused, Unavailable


class VsphereError(Unavailable):
    """A session could not be opened; ``kind`` is a stable word for journals, alerts and JSON."""

    kind = "vsphere_error"

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.args = (f"{endpoint}: {message}",)
        self.endpoint = endpoint


class Unreachable(VsphereError):
    kind = "unreachable"


class TimedOut(VsphereError):
    kind = "timed_out"


class LoginRefused(VsphereError):
    kind = "login_refused"


class CertificateUntrusted(VsphereError):
    """The server's certificate does not verify against the system CAs."""

    kind = "certificate_untrusted"


class CertificateMismatch(VsphereError):
    """The server presented another certificate than the pinned one."""

    kind = "certificate_mismatch"

    def __init__(self, endpoint: str, expected: str, presented: str) -> None:
        super().__init__(endpoint, "the server's certificate does not match the pinned fingerprint "
                                   f"(expected {expected}, presented {presented})")
        self.expected = expected
        self.presented = presented


class ApiTooOld(VsphereError):
    kind = "api_too_old"


class ProtocolError(VsphereError):
    """The server answered something that is not a vSphere API."""

    kind = "protocol_error"


def fault_name(fault: BaseException) -> str:
    """A vSphere fault's type name ("SnapshotIncompatibleDeviceInVm"), or the exception's."""
    wsdl = getattr(type(fault), "_wsdlName", None)
    return wsdl or type(fault).__name__


def fault_message(fault: BaseException) -> str:
    """A readable one-line message: ``fault.msg`` when vSphere gave one, else the type name.

    ``str(fault)`` of a pyVmomi fault is a multi-line dump; never show that to a person.
    """
    msg = getattr(fault, "msg", None)
    name = fault_name(fault)
    if isinstance(fault, VsphereError):
        return fault.message
    if msg and msg != name and not msg.startswith("*types."):
        return f"{name}: {msg}"
    if getattr(fault, "_wsdlName", None):
        return name
    return f"{name}: {fault}" if str(fault) else name


def failure_from(exc: BaseException) -> HypervisorFailure:
    """The engine's word for what happened: a fault vSphere answered with is a refusal (the
    object gone when it says ManagedObjectNotFound); anything else (a timeout, a dropped
    connection, an unreadable answer) means no answer, and the call may still take effect."""
    if isinstance(exc, HypervisorFailure):
        return exc
    name = fault_name(exc)
    if getattr(type(exc), "_wsdlName", None):
        kind = Gone if name == "ManagedObjectNotFound" else Refused
        return kind(fault_message(exc), name)
    return NoAnswer(f"no answer from VMware: {fault_message(exc)}", name)
