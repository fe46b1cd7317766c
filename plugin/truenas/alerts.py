"""Which one-shot alerts a run or a reconcile raises and clears (pure).

One alert per mapping per run for VMs below the consistency their policy requires (the
manifest names the mappings each VM was found through), one per endpoint that could not be
logged into (TLS or login), one for leftovers reconcile could not remove. Each is keyed so
the next run replaces it, and cleared by the next success of the same scope: none of them
waits for a person to dismiss a transient failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..domain.model import Mapping

CONSISTENCY = "VMwareCoordConsistency"
ENDPOINT = "VMwareCoordEndpoint"
LEFTOVERS = "VMwareCoordLeftovers"
TAKEOVER = "VMwareCoordTakeover"


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
                                                    "error": errors[endpoint_id]}))
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


def leftover_alerts(still_open: int, errors: dict[str, str], leftovers: Iterable[str] = ()) -> list[AlertOp]:
    """After reconcile (or an end that left work to it): raise or clear the leftovers alert."""
    items = list(leftovers) + [f"{k}: {v}" for k, v in sorted(errors.items())]
    if still_open or items:
        return [AlertOp("create", LEFTOVERS, {"key": "leftovers", "count": still_open,
                                              "details": "; ".join(items)[:1000] or "-"})]
    return [AlertOp("delete", LEFTOVERS, "leftovers")]
