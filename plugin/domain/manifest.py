"""The honest outcome of a run, per VM and as a whole (pure; serialises to JSON).

A VM's entry says what was asked (the ladder), what was tried (attempts, with fault types
and latencies), what VMware really did (``quiesced`` as read back), what that makes the
VM's data in the ZFS snapshot (``consistency``), and whether that meets what its policy
requires. ``freenas:vmsynced`` is derived from these entries and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .model import Consistency, Provider, Strategy


@dataclasses.dataclass
class Attempt:
    """One rung tried: ``result`` is ok | failed | timed_out | ignored | skipped."""

    strategy: Strategy
    result: str
    fault_type: str | None = None
    message: str | None = None
    latency_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.value, "result": self.result, "fault_type": self.fault_type,
                "message": self.message,
                "latency_s": None if self.latency_s is None else round(self.latency_s, 3)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Attempt:
        return Attempt(Strategy(d["strategy"]), d["result"], d.get("fault_type"), d.get("message"),
                       d.get("latency_s"))


@dataclasses.dataclass
class VmOutcome:
    """One VM's entry in the manifest. Mutable while the run is in progress."""

    endpoint_id: str
    moref: str
    name: str
    instance_uuid: str | None
    policy: str                      # "policy 'gpu-hosts'" or "default policy"
    ladder: list[Strategy]           # after pruning, as planned
    required: Consistency
    host: str | None = None          # where removals are limited per host / per datastore
    datastores: list[str] = dataclasses.field(default_factory=list)
    mapping_ids: list[str] = dataclasses.field(default_factory=list)  # for per-mapping alerts
    consistency: Consistency = Consistency.CRASH
    achieved: Strategy | None = None
    quiesced: bool | None = None     # as read back from the snapshot tree
    reasons: list[str] = dataclasses.field(default_factory=list)
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    snapshot_name: str | None = None
    snapshot_moref: str | None = None
    create_latency_s: float | None = None
    lifetime_s: float | None = None
    undo: str | None = None          # removed | remove_failed | powered_on | still_running | power_on_failed
    consolidation_needed: bool | None = None
    provider: Provider = Provider.VSPHERE
    answer: str | None = None        # what the hypervisor answered when the strategy worked
    # Where the VM's files were when the snapshot was taken: what a restore registers from.
    vmx_path: str | None = None      # "[ds] dir/vm.vmx"
    disk_files: list[str] = dataclasses.field(default_factory=list)

    @property
    def compliant(self) -> bool:
        return self.consistency.rank >= self.required.rank

    def fault_types(self) -> list[str]:
        return sorted({a.fault_type for a in self.attempts if a.fault_type})

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id, "moref": self.moref, "name": self.name,
            "instance_uuid": self.instance_uuid, "host": self.host,
            "datastores": list(self.datastores), "mapping_ids": list(self.mapping_ids),
            "policy": self.policy,
            "ladder": [s.value for s in self.ladder], "required": self.required.value,
            "consistency": self.consistency.value,
            "achieved": self.achieved.value if self.achieved else None,
            "quiesced": self.quiesced, "compliant": self.compliant, "reasons": list(self.reasons),
            "attempts": [a.to_dict() for a in self.attempts], "fault_types": self.fault_types(),
            "snapshot_name": self.snapshot_name, "snapshot_moref": self.snapshot_moref,
            "create_latency_s": _round(self.create_latency_s), "lifetime_s": _round(self.lifetime_s),
            "undo": self.undo, "consolidation_needed": self.consolidation_needed,
            "provider": self.provider.value, "answer": self.answer,
            "vmx_path": self.vmx_path, "disk_files": list(self.disk_files),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> VmOutcome:
        return VmOutcome(
            endpoint_id=d["endpoint_id"], moref=d["moref"], name=d["name"],
            instance_uuid=d.get("instance_uuid"), host=d.get("host"),
            datastores=list(d.get("datastores", ())), mapping_ids=list(d.get("mapping_ids", ())),
            policy=d["policy"],
            ladder=[Strategy(s) for s in d["ladder"]], required=Consistency(d["required"]),
            consistency=Consistency(d["consistency"]),
            achieved=Strategy(d["achieved"]) if d.get("achieved") else None,
            quiesced=d.get("quiesced"), reasons=list(d.get("reasons", ())),
            attempts=[Attempt.from_dict(a) for a in d.get("attempts", ())],
            snapshot_name=d.get("snapshot_name"), snapshot_moref=d.get("snapshot_moref"),
            create_latency_s=d.get("create_latency_s"), lifetime_s=d.get("lifetime_s"),
            undo=d.get("undo"), consolidation_needed=d.get("consolidation_needed"),
            provider=Provider(d.get("provider", Provider.VSPHERE)), answer=d.get("answer"),
            vmx_path=d.get("vmx_path"), disk_files=list(d.get("disk_files", ())))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def vmsynced(outcomes: Iterable[VmOutcome], endpoint_errors: dict[str, str]) -> bool:
    """True only when every VM reached what its policy requires and no endpoint was lost.

    A datastore with no VMs is vacuously synced; an endpoint that could not be read is not
    (its VMs are unknown, so nothing can be claimed about them).
    """
    return not endpoint_errors and all(o.compliant for o in outcomes)


def summary(outcomes: Iterable[VmOutcome], endpoint_errors: dict[str, str]) -> str:
    """Compact counts for a ZFS user property: ``vms=5 quiesced=3 crash=2 noncompliant=1``."""
    items = list(outcomes)
    counts = Counter(o.consistency.value for o in items)
    parts = [f"vms={len(items)}"]
    parts += [f"{k}={counts[k]}" for k in sorted(counts)]
    noncompliant = sum(1 for o in items if not o.compliant)
    if noncompliant:
        parts.append(f"noncompliant={noncompliant}")
    if endpoint_errors:
        parts.append(f"endpoint_errors={len(endpoint_errors)}")
    return " ".join(parts)
