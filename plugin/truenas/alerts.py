"""Which one-shot alerts a run or a reconcile raises and clears (pure).

One alert per mapping per run for VMs below the consistency their policy requires (the
manifest names the mappings each VM was found through), one per endpoint that could not be
logged into (TLS or login), one for leftovers reconcile could not remove. Each is keyed so
the next run replaces it, and cleared by the next success of the same scope: none of them
waits for a person to dismiss a transient failure.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from ..domain.model import Mapping

CONSISTENCY = "VMwareCoordConsistency"
ENDPOINT = "VMwareCoordEndpoint"
LEFTOVERS = "VMwareCoordLeftovers"
TAKEOVER = "VMwareCoordTakeover"
TRUST = "VMwareCoordTrust"
DATASET_FLAGS = "VMwareCoordDatasetFlags"


@dataclasses.dataclass(frozen=True)
class AlertDefinition:
    """One alert class, in the words users read; middlewared's own classes are built from
    these in whichever shape the running release expects (truenas/middlewared/alert_classes)."""

    category: str                        # an AlertCategory member name
    level: str                           # an AlertLevel member name
    title: str
    text: str                            # %-format over the alert's arguments
    fields: tuple[tuple[str, type], ...]  # the arguments besides "key"


DEFINITIONS: dict[str, AlertDefinition] = {
    CONSISTENCY: AlertDefinition(
        "TASKS", "WARNING", "VMs Below Their Required Consistency",
        "%(count)d VM(s) on %(datastores)s (%(hostname)s) are not as consistent as their policy requires "
        "in the snapshot of %(dataset)s (run %(run_id)s): %(vms)s. See vmware_coord.manifest.",
        (("count", int), ("datastores", str), ("hostname", str), ("dataset", str), ("run_id", str),
         ("vms", str))),
    ENDPOINT: AlertDefinition(
        "TASKS", "WARNING", "VMware Login or Certificate Check Failed",
        "Connecting to %(hostname)s failed: %(error)s. Its VMs were snapshotted crash-consistent. %(fix)s",
        (("hostname", str), ("error", str), ("fix", str))),
    LEFTOVERS: AlertDefinition(
        "TASKS", "WARNING", "VMware Snapshots Left Behind",
        "%(count)d VMware snapshot(s) or power operation(s) could not be undone yet: %(details)s.",
        (("count", int), ("details", str))),
    TAKEOVER: AlertDefinition(
        "PLUGINS", "ERROR", "VMware Coordination Not Active",
        "truenas-vmware-coord does not know this TrueNAS's shapes (%(problems)s); the stock VMware "
        "snapshot behaviour is left in place. Update truenas-vmware-coord for this TrueNAS version.",
        (("problems", str),)),
    TRUST: AlertDefinition(
        "TASKS", "NOTICE", "VMware Certificate Pinned On First Use",
        "The certificate of %(hostname)s (a VMware-Snapshots host that existed before "
        "truenas-vmware-coord was installed) was not signed by a trusted CA, so the one it presented "
        "first was pinned: SHA-256 %(fingerprint)s. Check it against the vCenter's own certificate; a "
        "different certificate is refused from now on. %(fix)s",
        (("hostname", str), ("fingerprint", str), ("fix", str))),
    DATASET_FLAGS: AlertDefinition(
        "TASKS", "WARNING", "VMware Sync Flag Set On Datasets",
        "%(count)d dataset(s) carry freenas:vmsynced themselves (%(datasets)s), left by stock TrueNAS's "
        "manual snapshots with VMware sync: every later snapshot of them inherits that value whether or "
        "not its VMs were consistent. %(fix)s",
        (("count", int), ("datasets", str), ("fix", str))),
}


@dataclasses.dataclass(frozen=True)
class AlertOp:
    action: str        # "create" | "delete"
    klass: str
    args: Any          # create: the alert args (with "key"); delete: the key


def run_alerts(report: dict[str, Any], mappings: Iterable[Mapping], hosts: dict[str, str]) -> list[AlertOp]:
    members = sorted(mappings, key=lambda m: m.id)
    errors: dict[str, str] = report.get("endpoint_errors") or {}
    ops: list[AlertOp] = []
    for endpoint_id in sorted({m.endpoint_id for m in members}):
        host = hosts.get(endpoint_id, endpoint_id)
        if endpoint_id in errors:
            ops.append(AlertOp("create", ENDPOINT, {"key": endpoint_id, "hostname": host,
                                                    "error": errors[endpoint_id],
                                                    "fix": endpoint_fix(host, errors[endpoint_id])}))
        else:
            ops.append(AlertOp("delete", ENDPOINT, endpoint_id))
    for m in members:
        if m.endpoint_id in errors:
            continue  # its VMs are unknown: their alert is neither raised nor cleared
        below = [v for v in report.get("vms", []) if m.id in v.get("mapping_ids", ()) and not v["compliant"]]
        if below:
            names = ", ".join(f"{v['name']} ({v['consistency']}, needs {v['required']})" for v in below)
            ops.append(AlertOp("create", CONSISTENCY, {
                "key": m.id, "hostname": hosts.get(m.endpoint_id, m.endpoint_id),
                "dataset": report["dataset"], "run_id": report["run_id"], "datastores": m.datastore,
                "count": len(below), "vms": names}))
        else:
            ops.append(AlertOp("delete", CONSISTENCY, m.id))
    return ops


_PRESENTED = re.compile(r"presented ([0-9A-F:]{95})")


def pin_call(hostname: str, fingerprint: str) -> str:
    return f"midclt call vmware_coord.endpoint.pin '{json.dumps(hostname)}' '{json.dumps(fingerprint)}'"


def endpoint_fix(hostname: str, error: str) -> str:
    """The one thing to do about a failed connection, in the alert's words."""
    changed = _PRESENTED.search(error)
    if changed:
        return ("If the new certificate is expected (it was renewed), pin it: "
                f"{pin_call(hostname, changed.group(1))}")
    if "certificate" in error:
        return ("Read its fingerprint with midclt call vmware_coord.endpoint.fingerprint "
                f"'{json.dumps(hostname)}', check it, and pin it with {pin_call(hostname, '<fingerprint>')}")
    return "Check the host, the account and the network; the next run tries again."


def leftover_alerts(still_open: int, errors: dict[str, str], leftovers: Iterable[str] = ()) -> list[AlertOp]:
    """After reconcile (or an end that left work to it): raise or clear the leftovers alert."""
    items = list(leftovers) + [f"{k}: {v}" for k, v in sorted(errors.items())]
    if still_open or items:
        return [AlertOp("create", LEFTOVERS, {"key": "leftovers", "count": still_open,
                                              "details": "; ".join(items)[:1000] or "-"})]
    return [AlertOp("delete", LEFTOVERS, "leftovers")]
