"""What a restore would do, before anything is made: the coordinated snapshots a dataset has,
and for one of them every VM of its manifest with the point a restore gives it.

For each VM: the VMware snapshot it would be reverted to, or why none (crash-consistent in
the snapshot: the clone's disks are the point; powered off or suspended by its policy: its
disks are consistent as they are), the default new name, the hosts that could mount the
clone (over NFS, or seeing the original's iSCSI LUN), the host it would go to, and what
would refuse it. The checks are the restore's own
(``restore.plan_restore``), run with a preview id: nothing is created, and a VM the preview
calls restorable passes the same checks when it is restored. An endpoint's hosts are read once
for the whole manifest.
"""

from __future__ import annotations

from typing import Any

from ..domain import restore as names
from ..domain.errors import InvalidInput
from ..domain.model import Provider
from ..domain.restore import RestoreRequest, point_of
from ..domain.zfs_names import dataset_problem
from ..engine.journal import RunRecord
from ..engine.ports import describe
from ..zfs import clone as zfs_clone
from ..zfs.snapshot import list_snapshots
from .restore import check_export, plan_from, snapshot_run, source_of
from .restore_ports import HostInfo, RestoreHypervisor
from .restore_steps import RestoreParts

PREVIEW_ID = "00000000"   # a restore id no restore gets (they are random): the plan's names only


def coordinated_snapshots(parts: RestoreParts, dataset: str) -> list[dict[str, Any]]:
    """The snapshots of ``dataset`` itself that a coordinated run of this journal took, newest
    first: the ones a restore can start from."""
    problem = dataset_problem(dataset)
    if problem:
        raise InvalidInput.single("dataset", f"'{dataset}' {problem}")
    if not zfs_clone.exists(parts.shell, dataset):
        raise InvalidInput.single("dataset", f"{dataset} does not exist")
    out = []
    for snapshot in reversed(list_snapshots(parts.shell, dataset)):
        record = parts.journal.run_for_snapshot(snapshot) if snapshot.partition("@")[0] == dataset else None
        if record is not None:
            out.append(_summary(snapshot, record))
    return out


def _summary(snapshot: str, record: RunRecord) -> dict[str, Any]:
    vms = record.document.get("vms", ())
    return {"snapshot": snapshot, "run_id": record.run_id, "started_at": record.started_at,
            "vmsynced": record.document.get("vmsynced"), "vms": len(vms)}


def preview(parts: RestoreParts, snapshot: str, host: str | None = None,
            only: str | None = None) -> dict[str, Any]:
    """Every VM of the snapshot's manifest (``only``: that one) as a restore would see it,
    on ``host`` when given, else each VM's default host."""
    record = snapshot_run(parts, snapshot)
    entries = [e for e in record.document.get("vms", ()) if only is None or e.get("name") == only]
    endpoints: dict[str, RestoreHypervisor | str] = {}   # an open endpoint, or why it did not open
    hosts: dict[str, list[HostInfo]] = {}                # each endpoint's, read once
    try:
        vms = [_vm(parts, endpoints, hosts, record, snapshot, entry, host) for entry in entries]
    finally:
        for hv in endpoints.values():
            if not isinstance(hv, str):
                hv.close()
    return _summary(snapshot, record) | {"vms": vms}


def _vm(parts: RestoreParts, endpoints: dict[str, RestoreHypervisor | str], hosts: dict[str, list[HostInfo]],
        record: RunRecord, snapshot: str, entry: dict[str, Any], host: str | None) -> dict[str, Any]:
    name = entry.get("name", "?")
    revert_to, point = point_of(entry)
    out: dict[str, Any] = {
        "name": name, "provider": entry.get("provider", Provider.VSPHERE),
        "endpoint_id": entry.get("endpoint_id"), "consistency": entry.get("consistency"),
        "achieved": entry.get("achieved"), "revert_to": revert_to, "point": point,
        "default_new_name": names.default_name(name, "<restore id>"),
        "transport": None, "host": None, "hosts": [], "problem": None}
    if out["provider"] != Provider.VSPHERE:
        return out | {"problem": "a libvirt guest: restore covers VMware VMs"}
    hv = _endpoint(parts, endpoints, entry["endpoint_id"])
    if isinstance(hv, str):
        return out | {"problem": hv}
    try:
        source = source_of(parts, hv, name, snapshot, entry)
        out["transport"] = source.transport.value
        if entry["endpoint_id"] not in hosts:
            hosts[entry["endpoint_id"]] = hv.hosts()
        known = hosts[entry["endpoint_id"]]
        out["hosts"] = sorted(h.name for h in known if h.connected and source.reaches(parts, h))
        plan = plan_from(parts, hv, RestoreRequest(snapshot, name, host=host), record.run_id, entry,
                         PREVIEW_ID, source, known)
        check_export(parts, plan)   # as the restore checks it
    except InvalidInput as exc:
        return out | {"problem": "; ".join(e.message for e in exc.errors)}
    except Exception as exc:  # noqa: BLE001 - the endpoint's failure, said for this VM
        return out | {"problem": describe(exc)}
    return out | {"host": plan.host_name}


def _endpoint(parts: RestoreParts, endpoints: dict[str, RestoreHypervisor | str],
              endpoint_id: str) -> RestoreHypervisor | str:
    if endpoint_id not in endpoints:
        try:
            endpoints[endpoint_id] = parts.open_endpoint(endpoint_id)
        except InvalidInput as exc:
            endpoints[endpoint_id] = "; ".join(e.message for e in exc.errors)
        except Exception as exc:  # noqa: BLE001 - unreachable, login refused: said per VM
            endpoints[endpoint_id] = f"endpoint {endpoint_id} unavailable: {describe(exc)}"
    return endpoints[endpoint_id]
