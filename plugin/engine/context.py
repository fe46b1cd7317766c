"""What begin hands to end: the run's scope and every VM's outcome, serialisable and
secret-free (endpoints by id only), and the names that tie VMware snapshots to runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..domain import manifest
from ..domain.manifest import VmOutcome
from ..domain.selection import SNAPSHOT_NAME_PREFIX
from ..zfs.snapshot import PROP_RUN, PROP_SUMMARY, PROP_VMSYNCED


@dataclasses.dataclass
class RunContext:
    run_id: str
    dataset: str
    recursive: bool
    exclude: list[str]
    started_at: float
    vms: list[VmOutcome]
    endpoint_errors: dict[str, str]
    warnings: list[str]
    begin_seconds: float = 0.0
    snapshot: str | None = None

    @property
    def vmsynced(self) -> bool:
        return manifest.vmsynced(self.vms, self.endpoint_errors)

    def properties(self) -> dict[str, str]:
        """User properties for the ZFS snapshot: the run id, a summary, an honest vmsynced."""
        return {PROP_RUN: self.run_id,
                PROP_SUMMARY: manifest.summary(self.vms, self.endpoint_errors),
                PROP_VMSYNCED: "Y" if self.vmsynced else "N"}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dataset": self.dataset, "recursive": self.recursive,
                "exclude": list(self.exclude), "started_at": self.started_at,
                "begin_seconds": round(self.begin_seconds, 3), "snapshot": self.snapshot,
                "vmsynced": self.vmsynced, "properties": self.properties(),
                "endpoint_errors": dict(self.endpoint_errors), "warnings": list(self.warnings),
                "vms": [v.to_dict() for v in self.vms]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunContext:
        return RunContext(run_id=d["run_id"], dataset=d["dataset"], recursive=d["recursive"],
                          exclude=list(d.get("exclude", ())), started_at=d["started_at"],
                          vms=[VmOutcome.from_dict(v) for v in d.get("vms", ())],
                          endpoint_errors=dict(d.get("endpoint_errors", {})),
                          warnings=list(d.get("warnings", ())),
                          begin_seconds=d.get("begin_seconds", 0.0), snapshot=d.get("snapshot"))


def snapshot_name(run_id: str) -> str:
    """The VMware snapshot name of a run: the marker ``reconcile`` recognises."""
    return f"{SNAPSHOT_NAME_PREFIX}{run_id}"


def run_id_of(snapshot: str) -> str | None:
    return snapshot[len(SNAPSHOT_NAME_PREFIX):] if snapshot.startswith(SNAPSHOT_NAME_PREFIX) else None
