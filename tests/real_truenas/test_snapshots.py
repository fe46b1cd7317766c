"""ZFS snapshots through the real middlewared: manual with vmware_sync, a periodic task run by the
real zettarepl process and its observer, and the alerts the plugin raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from .conftest import vmware_snapshots, wait_for, zfs, zfs_get

RUN_PROPERTY = "org.truenas.vmware-coord:run"


def test_manual_snapshot_with_vmware_sync(
    api: Any, sim: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    dataset = "tank/vmware/nfs01"
    snapshot = api.call("pool.snapshot.create", {"dataset": dataset, "name": "manual-1", "vmware_sync": True})
    observe("pool.snapshot.create result", {k: v for k, v in snapshot.items() if k != "properties"})
    assert snapshot["id"] == f"{dataset}@manual-1"
    # plugins/zfs_/snapshot.py:190-191 (TS-25.10.6): the stock creator sets freenas:vmsynced=Y on
    # the DATASET when the begin context says vmsynced, and every later snapshot would inherit
    # it. The plugin's manual begin tells it False and its end hook labels the snapshot itself.
    on_snapshot, on_dataset = (
        zfs_get(snapshot["id"], "freenas:vmsynced"),
        zfs_get(dataset, "freenas:vmsynced"),
    )
    observe("manual snapshot freenas:vmsynced (snapshot, dataset)", [on_snapshot, on_dataset])
    assert on_snapshot == ("Y", "local")
    assert on_dataset != ("Y", "local"), "the dataset was marked: every later snapshot inherits Y"
    run_id, source = zfs_get(snapshot["id"], RUN_PROPERTY)
    observe("manual snapshot run property", [run_id, source])
    assert source == "local" and run_id not in ("", "-")
    assert not any(vmware_snapshots(sim)[name] for name in vms["nfs01"])
    runs = api.call("vmware_coord.runs", 10)
    assert run_id in [r.get("run_id") for r in runs], runs
    manifest = api.call("vmware_coord.manifest", snapshot["id"])
    observe("vmware_coord.manifest", manifest)
    assert manifest is not None and sorted(v["name"] for v in manifest["vms"]) == vms["nfs01"]


def test_private_zfs_snapshot_create_with_vmware_sync(
    api: Any, mapping: dict[str, Any], observe: Any
) -> None:
    created = api.call(
        "zfs.snapshot.create", {"dataset": "tank/vmware/nfs01", "name": "manual-2", "vmware_sync": True}
    )
    observe("zfs.snapshot.create result keys", sorted(created))
    assert created["id"] == "tank/vmware/nfs01@manual-2"
    assert zfs_get(created["id"], RUN_PROPERTY)[1] == "local"


def _alerts(api: Any, klass: str) -> list[dict[str, Any]]:
    return [a for a in api.call("alert.list") if a["klass"] == klass]


def test_alerts_raised_and_cleared(
    api: Any, sim: Any, info: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    """nfs02: a second mapping (host "localhost", no certificate pin), then pinned, then a VM whose
    snapshots fail: the endpoint and the consistency alerts in alert.list, and their clearing."""
    dataset = info["datastores"]["nfs02"]["dataset"]
    row = api.call(
        "vmware.create",
        {
            "hostname": "localhost",
            "username": sim.username,
            "password": sim.password,
            "datastore": "nfs02",
            "filesystem": dataset,
        },
    )
    api.call("pool.snapshot.create", {"dataset": dataset, "name": "unpinned", "vmware_sync": True})
    endpoint_alerts = wait_for(lambda: _alerts(api, "VMwareCoordEndpoint"), 30, what="the endpoint alert")
    observe("alert VMwareCoordEndpoint", endpoint_alerts)
    assert endpoint_alerts[0]["args"]["hostname"] == "localhost"
    assert sim.password not in str(endpoint_alerts)
    assert zfs_get(f"{dataset}@unpinned", "freenas:vmsynced")[0] != "Y"

    endpoint = api.call(
        "vmware_coord.endpoint.create", {"hostname": "localhost", "tls": {"sha256_fingerprint": sim.sha256}}
    )
    try:
        api.call("pool.snapshot.create", {"dataset": dataset, "name": "pinned", "vmware_sync": True})
        wait_for(lambda: not _alerts(api, "VMwareCoordEndpoint"), 30, what="the endpoint alert to clear")
        consistency = wait_for(
            lambda: _alerts(api, "VMwareCoordConsistency"), 30, what="the consistency alert"
        )
        observe("alert VMwareCoordConsistency", consistency)
        assert "db-01" in consistency[0]["formatted"]
        assert zfs_get(f"{dataset}@pinned", "freenas:vmsynced")[0] != "Y"
    finally:
        api.call("vmware_coord.endpoint.delete", endpoint["id"])
        api.call("vmware.delete", row["id"])


def test_periodic_snapshot_task_through_real_zettarepl(
    api: Any, sim: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    """pool.snapshottask.create starts the real zettarepl child (plugins/zettarepl.py
    ZettareplProcess); pool.snapshottask.run makes it run the task now; its observer calls
    vmware.periodic_snapshot_task_begin/proceed/end over the real client, answered by the plugin."""
    dataset = "tank/vmware/nfs01"
    before = set(zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset).split())
    task = api.call(
        "pool.snapshottask.create",
        {
            "dataset": dataset,
            "recursive": False,
            "lifetime_value": 1,
            "lifetime_unit": "DAY",
            "naming_schema": "auto-%Y-%m-%d_%H-%M-%S",
            "allow_empty": True,
            "enabled": True,
            "schedule": {"minute": "0", "hour": "0", "dom": "1", "month": "1", "dow": "*"},
        },
    )
    observe("pool.snapshottask.create result keys", sorted(task))
    try:
        begin = api.call("vmware.periodic_snapshot_task_begin", task["id"])
        observe("vmware.periodic_snapshot_task_begin (plugin) result", begin)
        assert begin["dataset"] == dataset and begin["task_id"] == task["id"], begin
        started = time.time()
        api.call("pool.snapshottask.run", task["id"])

        def new_snapshots() -> list[str]:
            now = set(zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset).split())
            return sorted(now - before)

        created = wait_for(new_snapshots, 120, 1, "zettarepl's snapshot")
        observe("periodic snapshot names", created)
        snapshot = created[-1]
        vmsynced = wait_for(
            lambda: zfs_get(snapshot, RUN_PROPERTY)[1] == "local" and zfs_get(snapshot, "freenas:vmsynced"),
            120,
            1,
            "the end hook's labels",
        )
        observe("periodic snapshot freenas:vmsynced", vmsynced)
        # zettarepl passes the observer's properties as `zfs snapshot -o`: on the snapshot itself.
        assert vmsynced == ("Y", "local"), vmsynced
        wait_for(
            lambda: not any(vmware_snapshots(sim)[n] for n in vms["nfs01"]), 60, 1, "VMware snapshots removed"
        )
        state = api.call("zettarepl.get_state")
        observe(
            "zettarepl state of the task", state.get("tasks", {}).get(f"periodic_snapshot_task_{task['id']}")
        )
        observe("periodic run seconds", round(time.time() - started, 1))
    finally:
        api.call("pool.snapshottask.delete", task["id"])


def test_takeover_alert_class_in_the_real_alert_framework(api: Any, observe: Any) -> None:
    """ "VMware Coordination Not Active" as the plugin's setup() raises it when the stock shape changed.

    A drifted stock plugin would need another middlewared with an edited vmware.py; here the
    plugin's own alert class goes through the real alert.oneshot_create/list/oneshot_delete.
    """
    api.call(
        "alert.oneshot_create", "VMwareCoordTakeover", {"key": "takeover", "problems": "probe"}, job=False
    )
    raised = wait_for(lambda: _alerts(api, "VMwareCoordTakeover"), 30, what="the takeover alert")
    observe("alert VMwareCoordTakeover", raised)
    assert "probe" in raised[0]["formatted"] and raised[0]["level"] == "ERROR"
    api.call("alert.oneshot_delete", "VMwareCoordTakeover", "takeover")
    wait_for(lambda: not _alerts(api, "VMwareCoordTakeover"), 30, what="the takeover alert to clear")


def test_coordinated_run_and_reconcile_jobs(
    api: Any, sim: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    """vmware_coord.run and vmware_coord.reconcile: public jobs, waited for through the client."""
    dataset = "tank/vmware/nfs01"
    report = api.call("vmware_coord.run", dataset, False, "coord-1", job=True)
    observe("vmware_coord.run result keys", sorted(report))
    assert report["snapshot"] == f"{dataset}@coord-1" and report["vmsynced"] is True, report
    # Properties passed at creation through zfs.snapshot.create: local on the snapshot.
    assert zfs_get(f"{dataset}@coord-1", "freenas:vmsynced") == ("Y", "local")
    assert zfs_get(f"{dataset}@coord-1", RUN_PROPERTY) == (report["run_id"], "local")
    assert not any(vmware_snapshots(sim)[name] for name in vms["nfs01"])
    reconciled = api.call("vmware_coord.reconcile", job=True)
    observe("vmware_coord.reconcile result", reconciled)
    assert reconciled.get("still_open", 0) == 0, reconciled
    jobs = api.call("core.get_jobs", [["method", "=", "vmware_coord.run"]])
    observe(
        "core.get_jobs vmware_coord.run",
        [{k: j.get(k) for k in ("id", "method", "state", "arguments", "progress")} for j in jobs],
    )
    assert jobs and jobs[-1]["state"] == "SUCCESS"


DRIFT = r"""
import json, sys
sys.path.append(sys.argv[1])   # where the loader puts the plugin: after the framework
from middlewared.service import private
from middlewared.plugins import vmware as stock

def periodic_snapshot_task_begin(self, task_id, options=None):   # a future release's shape
    return None

stock.VMWareService.periodic_snapshot_task_begin = private(periodic_snapshot_task_begin)
import truenas_vmware_coord.vmware_coord as plugin
names = ("snapshot_begin", "snapshot_end", "periodic_snapshot_task_proceed", "periodic_snapshot_task_end")
cls = stock.VMWareService
untouched = [n for n in names if not getattr(getattr(cls, n), "_vmware_coord", False)]
print(json.dumps({"problems": plugin.TAKEOVER_PROBLEMS, "untouched": untouched}))
"""


def test_takeover_refused_on_a_drifted_real_stock_class(info: dict[str, Any], observe: Any) -> None:
    """The real plugins/vmware.py VMWareService with one hook's signature changed in memory, then
    the plugin imported as the loader imports it: all hooks left stock, and the problems that
    setup() turns into the "VMware Coordination Not Active" alert."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIFT, info["site"]],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    observe("drifted stock class: takeover", result)
    assert any("periodic_snapshot_task_begin" in p for p in result["problems"]), result
    assert len(result["untouched"]) == 4, result
