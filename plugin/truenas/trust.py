"""Trust on first use, for the VMware-Snapshots hosts that existed before this plugin.

Stock TrueNAS never verified a vCenter's certificate; this plugin always does. A host
mapped before the plugin was installed (the ``trust_baseline`` recorded at its first
setup) whose certificate the system CAs do not verify (self-signed, the usual case) is
pinned on the first connection: the presented certificate's SHA-256 fingerprint becomes
the host's pin (in its ``vmware_coord.endpoint`` row, visible and changeable), a
notice alert shows it and how to check it, and from then on a different certificate is
refused, with an alert carrying the new fingerprint and the one call that pins it. Hosts
mapped after the install get no such grace: they need an explicit pin or CA.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection

from ..vsphere.errors import CertificateUntrusted
from ..vsphere.hypervisor import VsphereConnector, VsphereHypervisor
from ..vsphere.session import EndpointSettings
from ..vsphere.tls import VerifyMode, server_fingerprint
from . import alerts

log = logging.getLogger(__name__)


class FirstUseConnector(VsphereConnector):
    """A VsphereConnector that pins, once, the certificate of a host of the baseline."""

    def __init__(self, endpoints: dict[str, EndpointSettings], password_for: Callable[[str], str],
                 first_use: Collection[str], hosts: dict[str, str],
                 pin: Callable[[str, str], None], notify: Callable[[alerts.AlertOp], None]) -> None:
        """``first_use``: endpoint ids that may be pinned on first use; ``hosts``: endpoint id
        -> the mapping's host name; ``pin(hostname, fingerprint)`` stores the pin."""
        super().__init__(endpoints, password_for)
        self._first_use = set(first_use)
        self._hosts = hosts
        self._pin = pin
        self._notify = notify

    def open(self, endpoint_id: str) -> VsphereHypervisor:
        try:
            return super().open(endpoint_id)
        except CertificateUntrusted:
            if endpoint_id not in self._first_use:
                raise
        settings = self._endpoints[endpoint_id]
        fingerprint = server_fingerprint(settings.host, settings.port, settings.connect_timeout)
        pinned = dataclasses.replace(settings, verify=VerifyMode.PINNED, fingerprint=fingerprint)
        hv = VsphereHypervisor.connect(pinned, self._password_for(endpoint_id))   # proves the pin
        hostname = self._hosts.get(endpoint_id, settings.host)
        self._pin(hostname, fingerprint)
        self._first_use.discard(endpoint_id)
        self._endpoints[endpoint_id] = pinned
        log.warning("%s: certificate pinned on first use: %s", hostname, fingerprint)
        self._notify(alerts.AlertOp("create", alerts.TRUST, {
            "key": hostname, "hostname": hostname, "fingerprint": fingerprint,
            "fix": "If it is not the vCenter's certificate, delete the pin (vmware_coord.endpoint.delete) "
                   f"and pin the right one: {alerts.pin_call(hostname, '<fingerprint>')}"}))
        return hv
