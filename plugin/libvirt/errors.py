"""libvirt's errors as the engine's typed failures (``engine/ports.py``).

The rule that matters is the one for a freeze: only an answer that certainly means "nothing
was done" is ``Refused`` (the domain is gone or not running, it has no agent channel, the
agent is not connected so nothing was sent, the agent refused the command); anything else
(a timeout, a lost connection, an error libvirt does not explain) is ``NoAnswer``, because
the guest may be frozen now or later: the engine then keeps the journal row open and thaws.
Codes are libvirt's ``virErrorNumber`` (libvirt 9.0, ``include/libvirt/virterror.h``), read
by name from the binding.
"""

from __future__ import annotations

import libvirt

from ..engine.ports import Gone, HypervisorFailure, NoAnswer, Refused, Unavailable

# The domain does not exist (any more).
_GONE = {libvirt.VIR_ERR_NO_DOMAIN}
# Answers after which nothing happened: not running (55), no agent channel configured (74),
# unsupported (84), a lock that could not be had within libvirt's job timeout (68), bad input.
_REFUSED = {libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
            libvirt.VIR_ERR_OPERATION_UNSUPPORTED, libvirt.VIR_ERR_OPERATION_TIMEOUT,
            libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_ACCESS_DENIED}
# The agent answered with an error of its own: it refused the command.
_AGENT_REFUSED = "unable to execute QEMU agent command"
# libvirt knows the agent is not there: the command was never sent (qemuDomainAgentAvailable).
_AGENT_ABSENT = ("QEMU guest agent is not connected", "QEMU guest agent is not configured")


def message_of(exc: libvirt.libvirtError) -> str:
    return (exc.get_error_message() or str(exc)).strip().splitlines()[0]


def failure_from(exc: BaseException, what: str) -> HypervisorFailure:
    """``what`` says what was asked ("freezing guest 'db'"), for the message a person reads."""
    if isinstance(exc, HypervisorFailure):
        return exc
    if not isinstance(exc, libvirt.libvirtError):
        return NoAnswer(f"{what}: no answer from libvirt: {type(exc).__name__}: {exc}", type(exc).__name__)
    code, text = exc.get_error_code(), message_of(exc)
    fault = f"libvirt:{code}"
    if code in _GONE:
        return Gone(f"{what}: {text}", fault)
    if code in _REFUSED or _AGENT_REFUSED in text or any(t in text for t in _AGENT_ABSENT):
        return Refused(f"{what}: {text}", fault)
    return NoAnswer(f"{what}: {text}", fault)


def unavailable(exc: BaseException, uri_name: str) -> Unavailable:
    text = message_of(exc) if isinstance(exc, libvirt.libvirtError) else f"{type(exc).__name__}: {exc}"
    return Unavailable(f"cannot connect to libvirt endpoint {uri_name}: {text}")
