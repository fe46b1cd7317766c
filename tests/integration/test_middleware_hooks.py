"""The plugin inside a (documented) middlewared double, driven the way TrueNAS drives it,
against the vSphere simulator and a real zfs-fuse pool.

- zettarepl's observer, message by message: Start -> vmware.periodic_snapshot_task_begin ->
  periodic_snapshot_task_proceed (job) -> the snapshot created with the returned properties ->
  Success/Error -> periodic_snapshot_task_end (job);
- zfs.snapshot.create with vmware_sync (the manual path), exclude lists, blocked activity;
- one VM failing (alert raised, then cleared by the next good run);
- middlewared dying between begin and end (a real process exits), reconcile at setup.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from truenas_vmware_coord.domain.selection import SNAPSHOT_NAME_PREFIX

from tests.middleware_double import RELEASES, harness, stock_vmware
from tests.middleware_double.middleware import Middleware
from tests.middleware_double.zettarepl import Observer, run_task, run_tick
from tools.rig import inventory

ROOT = Path(__file__).resolve().parents[2]
NAS = "nas.test.local"  # the double's network.configuration: hostname "nas", domain "test.local"
_n = itertools.count()


class Place:
    """A dataset, its NFS datastore, a stock mapping row and a pinned endpoint, in one middleware."""

    def __init__(self, mw: Middleware, sim, si, pool, tag: str) -> None:
        self.mw, self.si = mw, si
        self.dataset = pool.create_dataset(f"mw{os.getpid()}/{tag}")
        self.datastore = inventory.add_nfs_datastore(si, str(pool.dataset_mountpoint(self.dataset)), NAS)
        self.mapping_id = harness.add_mapping(mw, sim.host, sim.username, sim.password, self.datastore,
                                              self.dataset)
        self.pool = pool

    def vm(self, name: str, **kwargs):
        return inventory.create_vm(self.si, f"{self.datastore}-{name}", self.datastore, **kwargs)

    def leftovers(self) -> list[str]:
        return [f"{vm.name}: {n}" for vm in inventory.vms(self.si) if vm.name.startswith(f"{self.datastore}-")
                for n in inventory.snapshot_names(vm) if n.startswith(SNAPSHOT_NAME_PREFIX)]

    def prop(self, snapshot: str, name: str) -> str:
        return self.pool.get(f"{self.dataset}@{snapshot}", name)


def pin(mw: Middleware, sim) -> None:
    """What the UI does: read the host's fingerprint through the API, then pin it."""
    fp = mw.midclt("vmware_coord.endpoint.fingerprint", json.dumps(sim.host), str(sim.port))["result"]
    assert fp["sha256_fingerprint"].replace(":", "").lower() == sim.sha256.replace(":", "").lower()
    settings = {"hostname": sim.host, "port": sim.port, "connect_timeout_seconds": 5,
                "tls": {"sha256_fingerprint": fp["sha256_fingerprint"]}}
    assert "result" in mw.midclt("vmware_coord.endpoint.create", json.dumps(settings))


@pytest.fixture(params=RELEASES)
def place(request, tmp_path: Path, sim, module_si, zfs_pool) -> Iterator[Place]:
    """One middlewared of each release's shapes (tests/middleware_double: 25.10, 26.0, 27)."""
    mw, _plugin = harness.start(tmp_path / "mw", release=request.param)
    harness.wait_jobs(mw)
    p = Place(mw, sim, module_si, zfs_pool, f"d{next(_n)}")
    pin(mw, sim)
    stock_vmware.STOCK_CALLS.clear()
    yield p
    harness.stop(mw)


def task(mw: Middleware, dataset: str, recursive: bool = False, exclude: list[str] | None = None,
         allow_empty: bool = True) -> dict:
    row = {"id": len(mw.snapshot_tasks) + 1, "dataset": dataset, "recursive": recursive,
           "exclude": exclude or [], "naming_schema": f"auto-{next(_n)}-%Y%m%d-%H%M%S",
           "allow_empty": allow_empty}
    mw.snapshot_tasks.append(row)
    return row


def name_of(snapshot: str) -> str:
    return snapshot.partition("@")[2]


def test_periodic_task_through_the_observer(place: Place) -> None:
    place.vm("app-01")
    place.vm("app-02")
    observer = Observer(place.mw)
    tick = run_task(observer, task(place.mw, place.dataset))
    snap = name_of(tick.snapshot)

    # (the local-VM pause is asked too, as the real observer does: no VM of TrueNAS's here)
    assert observer.client.calls == ["vmware.periodic_snapshot_task_begin",
                                     "vmware.periodic_snapshot_task_proceed",
                                     "vm.periodic_snapshot_task_begin",
                                     "vmware.periodic_snapshot_task_end"]
    assert type(tick.final).__name__ == "PeriodicSnapshotTaskSuccess"
    assert tick.options.properties == {"freenas:vmsynced": "Y"}
    assert place.prop(snap, "freenas:vmsynced") == "Y"
    run_id = place.prop(snap, "org.truenas.vmware-coord:run")
    assert place.prop(snap, "org.truenas.vmware-coord:summary") == "vms=2 quiesced=2"
    assert place.leftovers() == []
    assert stock_vmware.STOCK_CALLS == []  # the stock hook bodies never ran
    manifest = place.mw.midclt("vmware_coord.manifest", json.dumps(tick.snapshot))["result"]
    assert manifest["run_id"] == run_id and {v["undo"] for v in manifest["vms"]} == {"removed"}
    runs = place.mw.midclt("vmware_coord.runs")["result"]
    assert runs[0]["run_id"] == run_id and runs[0]["vmsynced"] is True


def test_the_label_goes_on_the_tasks_own_snapshot_not_the_newest(place: Place) -> None:
    place.vm("app-01")
    observer = Observer(place.mw)
    the_task = task(place.mw, place.dataset)

    def manual_snapshot_meanwhile(_snapshot: str) -> None:
        subprocess.run(["zfs", "snapshot", f"{place.dataset}@someones-manual"], check=True)

    tick = run_task(observer, the_task, after_create=manual_snapshot_meanwhile)
    assert place.prop(name_of(tick.snapshot), "org.truenas.vmware-coord:run") not in ("", "-")
    assert place.prop("someones-manual", "org.truenas.vmware-coord:run") == "-"


def test_one_vm_failing_is_honest_and_alerts_until_the_next_good_run(place: Place) -> None:
    place.vm("app-01")
    bad = place.vm("db-01")
    policy = {"name": f"strict-{place.datastore}", "priority": 5, "ladder": ["quiesce"],
              "requires": "quiesced",
              "match": {"name_glob": "*-db-*"}}
    assert "result" in place.mw.midclt("vmware_coord.policy.create", json.dumps(policy))
    for method in ("CreateSnapshotEx_Task", "CreateSnapshot_Task"):
        inventory.inject_fault(bad, method, "InvalidState")
    observer = Observer(place.mw)
    the_task = task(place.mw, place.dataset)

    tick = run_task(observer, the_task)
    assert tick.options.properties == {}                       # not claimed
    assert place.prop(name_of(tick.snapshot), "freenas:vmsynced") == "N"
    alerts = [a for a in place.mw.alert.list() if a.klass.name == "VMwareCoordConsistency"]
    assert len(alerts) == 1 and f"{place.datastore}-db-01" in alerts[0].formatted
    assert place.leftovers() == []

    for method in ("CreateSnapshotEx_Task", "CreateSnapshot_Task"):
        inventory.clear_fault(bad, method)
    tick = run_task(observer, the_task, datetime.datetime.now() + datetime.timedelta(minutes=1))
    assert tick.options.properties == {"freenas:vmsynced": "Y"}
    assert [a for a in place.mw.alert.list() if a.klass.name == "VMwareCoordConsistency"] == []


def test_exclude_tasks_are_labelled_afterwards_and_blocked_activity_is_respected(place: Place) -> None:
    place.vm("app-01")
    parent = place.dataset.rsplit("/", 1)[0]
    sibling = place.pool.create_dataset(f"{parent.partition('/')[2]}/skip{next(_n)}")
    observer = Observer(place.mw)
    tick = run_task(observer, task(place.mw, parent, recursive=True, exclude=[sibling]))
    # zettarepl drops the observer's properties for exclude tasks: the label comes from end.
    assert tick.options.properties == {"freenas:vmsynced": "Y"}
    child = f"{place.dataset}@{name_of(tick.snapshot)}"
    assert place.pool.get(child, "freenas:vmsynced") == "Y"
    assert place.pool.get(tick.snapshot, "freenas:vmsynced") == "Y"
    assert f"{sibling}@{name_of(tick.snapshot)}" not in place.pool.snapshots(sibling)
    assert place.leftovers() == []

    place.mw.network.blocked.add("vmware")
    observer = Observer(place.mw)
    tick = run_task(observer, task(place.mw, place.dataset))
    assert tick.options.properties == {} and place.leftovers() == []
    assert observer.client.calls[-2:] == ["vmware.periodic_snapshot_task_proceed",   # no context kept: no end
                                          "vm.periodic_snapshot_task_begin"]
    plan = place.mw.midclt("vmware_coord.plan", json.dumps(place.dataset))
    assert plan["error"]["data"]["error"] == 64   # ENONET: NetworkActivityDisabled


def test_success_without_start_and_empty_snapshots_destroyed_after_success(place: Place) -> None:
    observer = Observer(place.mw)   # no VM: the run is vacuously synced, the snapshot empty
    first = task(place.mw, place.dataset, allow_empty=False)
    twin = task(place.mw, place.dataset)
    twin["naming_schema"] = first["naming_schema"]
    ticks = run_tick(observer, [first, twin])
    assert ticks[1].options is None                           # Success without Start: no hook ran
    assert observer.client.calls.count("vmware.periodic_snapshot_task_begin") == 1
    assert ticks[0].destroyed is False                        # the twin allows empty snapshots: kept
    lone = task(place.mw, place.dataset, allow_empty=False)
    tick = run_task(Observer(place.mw), lone, datetime.datetime.now() + datetime.timedelta(minutes=2))
    assert tick.destroyed and tick.snapshot not in place.pool.snapshots(place.dataset)
    runs = place.mw.midclt("vmware_coord.runs")["result"]
    manifest = place.mw.midclt("vmware_coord.manifest", json.dumps(runs[0]["run_id"]))["result"]
    assert any("zettarepl destroys it" in w for w in manifest["warnings"])


def test_manual_snapshot_with_vmware_sync_is_labelled_on_the_snapshot_not_the_dataset(place: Place) -> None:
    place.vm("app-01")
    # 25.10: zfs.snapshot.create (also under pool.snapshot.create); 26.0+: pool.snapshot.create.
    created = place.mw.call_sync("pool.snapshot.create", {"dataset": place.dataset, "name": "manual-1",
                                                          "vmware_sync": True})
    assert created["name"] == f"{place.dataset}@manual-1"
    assert place.prop("manual-1", "freenas:vmsynced") == "Y"
    assert place.pool.get_source(f"{place.dataset}@manual-1", "freenas:vmsynced") == "local"
    assert place.pool.get_source(place.dataset, "freenas:vmsynced") != "local"   # stock put it here
    assert place.prop("manual-1", "org.truenas.vmware-coord:run") != ""
    assert place.leftovers() == [] and stock_vmware.STOCK_CALLS == []
    # A later snapshot inherits nothing false.
    subprocess.run(["zfs", "snapshot", f"{place.dataset}@plain"], check=True)
    assert place.prop("plain", "freenas:vmsynced") == "-"

    job = place.mw.call_sync("vmware_coord.run", place.dataset, False, "job-1")
    report = job.wait_sync(60, raise_error=True)
    assert report["vmsynced"] and report["snapshot"] == f"{place.dataset}@job-1"
    assert place.prop("job-1", "org.truenas.vmware-coord:run") == report["run_id"]
    assert any(d and "app-01" in d for _p, d in job.progress_history) and job.progress["percent"] == 100
    plan = place.mw.midclt("vmware_coord.plan", json.dumps(place.dataset))["result"]
    assert [v["facts"]["name"] for v in plan["vms"]] == [f"{place.datastore}-app-01"]
    assert plan["vms"][0]["mapping_ids"] == [str(place.mapping_id)]
    privileges = place.mw.midclt("vmware_coord.check_privileges", str(place.mapping_id))["result"]
    assert privileges["found"] and privileges["missing"] == {} and privileges["entities"] == 2


def test_stock_flags_on_datasets_are_found_alerted_and_cleared(place: Place) -> None:
    subprocess.run(["zfs", "set", "freenas:vmsynced=Y", place.dataset], check=True)   # left by stock
    assert place.mw.midclt("vmware_coord.dataset_flags")["result"] == [place.dataset]
    place.mw.call_sync("vmware_coord.startup")
    harness.wait_jobs(place.mw)
    assert [a.klass.name for a in place.mw.alert.list()].count("VMwareCoordDatasetFlags") == 1
    assert place.mw.midclt("vmware_coord.clear_dataset_flags")["result"] == [place.dataset]
    assert place.pool.get_source(place.dataset, "freenas:vmsynced") != "local"
    assert "VMwareCoordDatasetFlags" not in [a.klass.name for a in place.mw.alert.list()]


CHILD = """
import json, os, sys
sys.path[:0] = [{root!r}]
from tests.middleware_double import harness
mw, _ = harness.start({workdir!r})
harness.wait_jobs(mw)
mw.snapshot_tasks.append({task})
scope = mw.call_sync("vmware.periodic_snapshot_task_begin", 1)
context = mw.call_sync("vmware.periodic_snapshot_task_proceed", scope).wait_sync(60, raise_error=True)
print(json.dumps(context["run_id"]), flush=True)
os._exit(0)   # middlewared dies before zettarepl's Success message reaches periodic_snapshot_task_end
"""


def test_restart_between_begin_and_end_is_cleaned_up_by_setup(tmp_path: Path, sim, module_si,
                                                              zfs_pool) -> None:
    workdir = tmp_path / "mw"
    mw, _ = harness.start(workdir)
    harness.wait_jobs(mw)
    p = Place(mw, sim, module_si, zfs_pool, f"r{next(_n)}")
    pin(mw, sim)
    p.vm("app-01")
    harness.stop(mw)

    the_task = {"id": 1, "dataset": p.dataset, "recursive": False, "exclude": []}
    child = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), workdir=str(workdir),
                                                                task=repr(the_task))],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    run_id = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(p.leftovers()) == 1          # the VMware snapshot outlived its middlewared

    mw, _ = harness.start(workdir)           # "restart": setup starts a reconcile job
    try:
        harness.wait_jobs(mw)
        assert p.leftovers() == []
        run = next(r for r in mw.midclt("vmware_coord.runs")["result"] if r["run_id"] == run_id)
        assert run["state"] == "ended"
        assert [a for a in mw.alert.list() if a.klass.name == "VMwareCoordLeftovers"] == []
    finally:
        harness.stop(mw)
