"""Certificate trust for vSphere endpoints.

Three modes, chosen per endpoint:

- ``system`` (default): the system CAs verify the chain and the host name.
- ``pinned``: the certificate's SHA-256 fingerprint must equal the configured one. The
  presented certificate is fetched, compared, and then it alone becomes the trust anchor of
  the context used for the real connection, so the TLS handshake itself *succeeds* only
  with that certificate: pyVmomi's thumbprint fallback (which only runs after a failed
  verification, and then disables checking on the caller's context) is never entered, and a
  swapped certificate fails on every new connection.
- ``ca``: a given CA certificate (a vCenter's VMCA root) must have signed it.
- ``insecure``: no verification at all; only when set explicitly, and logged every time.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import socket
import ssl

from .errors import CertificateMismatch, CertificateUntrusted, TimedOut, Unreachable

log = logging.getLogger(__name__)

_HEX_PAIRS = re.compile(r"^[0-9A-F]{64}$")


class VerifyMode(enum.StrEnum):
    SYSTEM = "system"
    PINNED = "pinned"
    CA = "ca"               # a given CA (e.g. a vCenter's VMCA root) signs the certificate
    INSECURE = "insecure"


def normalize_fingerprint(value: str) -> str:
    """Accept ``AA:BB:..``, ``aabb..`` or with spaces; return ``AA:BB:..`` (SHA-256)."""
    hexdigits = re.sub(r"[\s:]", "", value).upper()
    if not _HEX_PAIRS.match(hexdigits):
        raise ValueError("a SHA-256 fingerprint is 32 bytes written as 64 hexadecimal digits")
    return ":".join(hexdigits[i:i + 2] for i in range(0, 64, 2))


def fingerprint_of(der: bytes) -> str:
    return normalize_fingerprint(hashlib.sha256(der).hexdigest())


def fetch_certificate(host: str, port: int, timeout: float, endpoint: str = "") -> bytes:
    """The DER certificate the server presents, read without trusting it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only reading what is presented; nothing is sent
    label = endpoint or f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except TimeoutError as exc:
        raise TimedOut(label, f"no TLS handshake within {timeout:g} s") from exc
    except OSError as exc:
        raise Unreachable(label, f"cannot connect: {exc.strerror or exc}") from exc
    if not der:
        raise Unreachable(label, "the server presented no certificate")
    return der


def server_fingerprint(host: str, port: int = 443, timeout: float = 10.0) -> str:
    """What a user pins: the SHA-256 fingerprint of the server's certificate."""
    return fingerprint_of(fetch_certificate(host, port, timeout))


def context_for(endpoint: str, host: str, port: int, mode: VerifyMode,
                pinned: str | None, timeout: float, ca_pem: str | None = None,
                check_hostname: bool | None = None) -> ssl.SSLContext:
    """An SSL context that enforces ``mode`` for one new connection."""
    mode = VerifyMode(mode)
    if mode is VerifyMode.CA:
        if not ca_pem:
            raise CertificateUntrusted(endpoint, "verify mode is 'ca' but no CA certificate is set")
        ctx = ssl.create_default_context(cadata=ca_pem)
        ctx.check_hostname = check_hostname is not False
        return ctx
    if mode is VerifyMode.INSECURE:
        log.warning("%s: TLS certificate verification is disabled for this endpoint", endpoint)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # explicit per-endpoint choice, logged above
        return ctx
    if mode is VerifyMode.PINNED:
        if not pinned:
            raise CertificateUntrusted(endpoint, "verify mode is 'pinned' but no fingerprint is set")
        expected = normalize_fingerprint(pinned)
        der = fetch_certificate(host, port, timeout, endpoint)
        presented = fingerprint_of(der)
        if presented != expected:
            raise CertificateMismatch(endpoint, expected, presented)
        ctx = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
        # The pin identifies the certificate itself; its names need not match the host, and
        # it may be a leaf (VMCA-signed) rather than a self-signed root.
        ctx.check_hostname = False
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return ctx
    ctx = ssl.create_default_context()
    ctx.check_hostname = check_hostname is not False
    return ctx
