"""Which one-shot alerts a run or a reconcile raises and clears (pure).

One alert per mapping group per run for VMs below the consistency their policy requires, one
per endpoint that could not be logged into (TLS or login), one for leftovers reconcile could
not remove. Each is keyed so the next run replaces it, and cleared by the next success of
the same scope: none of them waits for a person to dismiss a transient failure.

Attribution: a run's per-VM manifest names the endpoint, not the mapping, so VMs are
attributed to the in-scope mappings of their endpoint. With one mapping per host (the usual
TrueNAS setup) that is exactly one mapping; several mappings of one host in one run share
one alert, keyed by all their ids.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
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
    groups: dict[str, list[Mapping]] = defaultdict(list)
    for m in mappings:
        groups[m.endpoint_id].append(m)
    errors: dict[str, str] = report.get("endpoint_errors") or {}
    ops: list[AlertOp] = []
    for endpoint_id, members in sorted(groups.items()):
        host = hosts.get(endpoint_id, endpoint_id)
        key = ",".join(sorted(m.id for m in members))
        if endpoint_id in errors:
            ops.append(AlertOp("create", ENDPOINT, {"key": endpoint_id, "hostname": host,
                                                    "error": errors[endpoint_id]}))
        else:
            ops.append(AlertOp("delete", ENDPOINT, endpoint_id))
        below = [v for v in report.get("vms", []) if v["endpoint_id"] == endpoint_id and not v["compliant"]]
        if below:
            names = ", ".join(f"{v['name']} ({v['consistency']}, needs {v['required']})" for v in below)
            ops.append(AlertOp("create", CONSISTENCY, {
                "key": key, "hostname": host, "dataset": report["dataset"], "run_id": report["run_id"],
                "datastores": ", ".join(sorted(m.datastore for m in members)),
                "count": len(below), "vms": names}))
        elif endpoint_id not in errors:
            ops.append(AlertOp("delete", CONSISTENCY, key))
    return ops


def leftover_alerts(still_open: int, errors: dict[str, str], leftovers: Iterable[str] = ()) -> list[AlertOp]:
    """After reconcile (or an end that left work to it): raise or clear the leftovers alert."""
    items = list(leftovers) + [f"{k}: {v}" for k, v in sorted(errors.items())]
    if still_open or items:
        return [AlertOp("create", LEFTOVERS, {"key": "leftovers", "count": still_open,
                                              "details": "; ".join(items)[:1000] or "-"})]
    return [AlertOp("delete", LEFTOVERS, "leftovers")]
