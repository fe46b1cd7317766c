"""The coordinated snapshot transaction end to end: simulator + zfs-fuse + the real engine."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
from engine_env import NAS, EngineEnv, endpoint_settings, policies
from jsonschema import Draft202012Validator
from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.model import Consistency
from truenas_vmware_coord.domain.selection import SNAPSHOT_NAME_PREFIX
from truenas_vmware_coord.engine.config import EngineConfig
from truenas_vmware_coord.engine.journal import ActionState, Journal
from truenas_vmware_coord.engine.limits import Limits
from truenas_vmware_coord.vsphere.hypervisor import VsphereConnector

from tools.rig import inventory


@pytest.fixture
def env(sim, zfs_pool, module_si, tmp_path) -> EngineEnv:
    return EngineEnv.create(sim, zfs_pool, module_si, tmp_path)


def test_fifty_vms_are_snapshotted_concurrently_and_nothing_is_left(env):
    delay_ms = 300
    for i in range(50):
        vm = env.vm(f"app{i:02d}")
        inventory.set_extra_config(vm, {"vcsim.delay.CreateSnapshot_Task": str(delay_ms),
                                        "vcsim.delay.RemoveSnapshot_Task": str(delay_ms)})
    coordinator = env.coordinator(config=EngineConfig(limits=Limits(total=32, per_host=32)))
    started = time.monotonic()
    report = coordinator.run(env.dataset, env.take_snapshot("happy"))
    elapsed = time.monotonic() - started

    serial = 2 * 50 * delay_ms / 1000
    assert elapsed < serial / 3, f"{elapsed:.1f} s is not well under the serial {serial:.0f} s"
    assert report["begin_seconds"] < 50 * delay_ms / 1000 / 3
    assert len(report["vms"]) == 50
    assert all(v["consistency"] == "quiesced" and v["quiesced"] is True for v in report["vms"])
    assert all(v["undo"] == "removed" and v["lifetime_s"] is not None for v in report["vms"])
    assert report["vmsynced"] is True
    assert env.pool.get(f"{env.dataset}@happy", "freenas:vmsynced") == "Y"
    assert env.pool.get(f"{env.dataset}@happy", "org.truenas.vmware-coord:run") == report["run_id"]
    assert env.product_snapshots() == []
    assert Journal(env.journal_path).actions(report["run_id"], open_only=True) == []


def test_a_failing_create_falls_down_the_ladder_and_only_that_vm(env):
    victim = env.vm("victim")
    env.vm("bystander")
    inventory.inject_fault(victim, "CreateSnapshot_Task", "InvalidState")
    ladder = policies({"name": "try-hard", "priority": 1, "ladder": ["quiesce", "memory", "crash"],
                       "match": {"name_glob": "*-victim"}})
    report = env.coordinator(ladder).run(env.dataset, env.take_snapshot("fault"))

    victim_entry = env.outcome(report, "victim")
    assert [(a["strategy"], a["result"], a["fault_type"]) for a in victim_entry["attempts"]] == [
        ("quiesce", "failed", "InvalidState"), ("memory", "failed", "InvalidState")]
    assert victim_entry["consistency"] == "crash" and not victim_entry["compliant"]
    assert any("InvalidState" in r for r in victim_entry["reasons"])
    assert env.outcome(report, "bystander")["consistency"] == "quiesced"
    assert report["vmsynced"] is False
    assert env.pool.get(f"{env.dataset}@fault", "freenas:vmsynced") == "N"
    assert env.product_snapshots() == []


def test_a_failing_removal_is_journaled_and_reconcile_removes_it(env):
    vm = env.vm("sticky")
    inventory.inject_fault(vm, "RemoveSnapshot_Task", "FileFault")
    coordinator = env.coordinator()
    report = coordinator.run(env.dataset, env.take_snapshot("sticky"))
    assert env.outcome(report, "sticky")["undo"] == "remove_failed"
    assert report["leftovers"]
    open_actions = Journal(env.journal_path).actions(report["run_id"], open_only=True)
    assert [a.state for a in open_actions] == [ActionState.UNDO_FAILED]
    assert len(env.product_snapshots()) == 1

    inventory.clear_fault(vm, "RemoveSnapshot_Task")
    result = coordinator.reconcile(sweep=False)
    assert [u["result"] for u in result["undone"]] == ["removed"]
    assert result["still_open"] == 0
    assert env.product_snapshots() == []
    assert coordinator.reconcile(sweep=False)["undone"] == []  # idempotent


def test_quiesce_without_tools_is_crash_consistent_and_not_synced(env):
    env.vm("notools", tools_running=False)
    report = env.coordinator().run(env.dataset, env.take_snapshot("notools"))
    entry = env.outcome(report, "notools")
    assert entry["consistency"] == "crash" and entry["required"] == "quiesced"
    assert any("Tools" in r for r in entry["reasons"])
    assert report["vmsynced"] is False


class _ToolsStopAfterInventory(VsphereConnector):
    """The real connector; after the inventory is read, Tools stop in one VM (a real API call).

    This reproduces the moment the plan and VMware disagree: the plan saw Tools running,
    so quiesce is tried, and VMware silently ignores it. Only the read-back can tell.
    """

    def __init__(self, inner: VsphereConnector, vm: object) -> None:
        self.__dict__.update(inner.__dict__)
        self._victim = vm

    def open(self, endpoint_id: str):
        hv = super().open(endpoint_id)
        read = hv.inventory

        def inventory_then_stop():
            result = read()
            inventory.set_tools_running(self._victim, False)
            return result

        hv.inventory = inventory_then_stop
        return hv


def test_a_silently_ignored_quiesce_is_read_back_as_crash(env):
    victim = env.vm("flaky")
    base = env.coordinator()
    connector = _ToolsStopAfterInventory(base.parts.connector, victim)
    report = env.coordinator(connector=connector).run(env.dataset, env.take_snapshot("ignored"))
    entry = env.outcome(report, "flaky")
    assert entry["achieved"] == "quiesce" and entry["quiesced"] is False
    assert [a["result"] for a in entry["attempts"]] == ["ignored"]
    assert entry["consistency"] == "crash"
    assert any("ignored the quiesce" in r for r in entry["reasons"])
    assert report["vmsynced"] is False


def test_a_vm_past_its_deadline_is_cancelled_and_crash_consistent(env):
    slow = env.vm("slow")
    inventory.set_extra_config(slow, {"vcsim.async.CreateSnapshot_Task": "10000"})
    env.vm("quick")
    config = EngineConfig(vm_deadline_s=1.5, begin_deadline_s=10)
    started = time.monotonic()
    report = env.coordinator(config=config).run(env.dataset, env.take_snapshot("deadline"))
    assert time.monotonic() - started < 8
    entry = env.outcome(report, "slow")
    assert entry["consistency"] == "crash"
    assert [a["result"] for a in entry["attempts"]] == ["timed_out"]
    assert env.outcome(report, "quick")["consistency"] == "quiesced"
    assert env.product_snapshots() == []


def test_an_unreachable_vcenter_does_not_stop_the_zfs_snapshot(env):
    env.vm("orphaned")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = endpoint_settings(env.sim, port=port, id=f"user@127.0.0.1:{port}")
    started = time.monotonic()
    report = env.coordinator(settings=settings).run(env.dataset, env.take_snapshot("unreachable"))
    assert time.monotonic() - started < 5
    assert report["vmsynced"] is False
    assert "cannot connect" in report["endpoint_errors"][settings.id]
    assert env.pool.get(f"{env.dataset}@unreachable", "freenas:vmsynced") == "N"


def test_a_vcenter_slower_than_the_begin_deadline_does_not_hold_the_snapshot(start_vcsim, zfs_pool,
                                                                            tmp_path):
    # Only the inventory retrieval is slow, so building the scenario stays fast.
    slow_sim = start_vcsim("-vm", "0", "-method-delay", "RetrievePropertiesEx:6000")
    si = inventory.connect_to(slow_sim)
    env = EngineEnv.create(slow_sim, zfs_pool, si, tmp_path)
    env.vm("waiting")
    config = EngineConfig(begin_deadline_s=2.0, vm_deadline_s=2.0)
    started = time.monotonic()
    context = env.coordinator(config=config).begin(env.dataset)
    env.take_snapshot("late")(context.properties())
    taken = time.monotonic() - started
    assert taken < 2.0 + 1.5, f"the ZFS snapshot waited {taken:.1f} s"
    assert context.vmsynced is False
    assert "begin deadline" in " ".join(context.endpoint_errors.values())
    assert zfs_pool.get(f"{env.dataset}@late", "freenas:vmsynced") == "N"


def test_no_secret_in_journal_manifest_context_or_logs(start_vcsim, zfs_pool, tmp_path, caplog):
    secret = "Sup3r-S3cret-For-Coord-Tests"
    sim = start_vcsim("-vm", "0", "-strict", password=secret)
    si = inventory.connect_to(sim)
    env = EngineEnv.create(sim, zfs_pool, si, tmp_path)
    env.vm("a")
    env.vm("b", tools_running=False)
    caplog.set_level(logging.DEBUG)
    coordinator = env.coordinator(password=secret)
    context = coordinator.begin(env.dataset)
    context_json = json.dumps(context.to_dict())
    report = coordinator.end(context, env.take_snapshot("secret")(context.properties()))
    wrong = env.coordinator(password=secret + "-wrong").plan(env.dataset)[1]

    assert secret not in context_json
    assert secret not in json.dumps(report)
    assert secret not in json.dumps(wrong) and "login refused" in json.dumps(wrong)
    assert secret not in caplog.text
    for path in env.journal_path.parent.glob("journal.sqlite*"):
        assert secret.encode() not in path.read_bytes()


@pytest.mark.parametrize("strategy", ["power_off", "suspend"])
def test_power_policies_bring_the_vm_back(env, strategy):
    vm = env.vm(f"{strategy}-vm")
    rule = policies({"name": strategy, "priority": 1, "ladder": [strategy, "crash"],
                     "match": {"name_glob": f"*-{strategy}-vm"}})
    report = env.coordinator(rule).run(env.dataset, env.take_snapshot(strategy))
    entry = env.outcome(report, f"{strategy}-vm")
    assert entry["achieved"] == strategy and entry["consistency"] == Consistency.POWERED_OFF.value
    assert entry["undo"] == "powered_on"
    assert vm.runtime.powerState == "poweredOn"


def test_a_datastore_without_vms_is_vacuously_synced(env):
    report = env.coordinator().run(env.dataset, env.take_snapshot("empty"))
    assert report["vms"] == [] and report["vmsynced"] is True
    assert NAS in env.storage().addresses


def test_the_stored_manifest_follows_the_run_report_schema(env):
    env.vm("ok")
    env.vm("blocked", tools_running=False)
    report = env.coordinator().run(env.dataset, env.take_snapshot("schema"))
    stored = Journal(env.journal_path).run(report["run_id"])
    validator = Draft202012Validator(schemas.load_schema("run_report"))
    validator.validate(stored.manifest)
    validator.validate(stored.context)
    assert stored.snapshot == f"{env.dataset}@schema"
    assert all(v["consolidation_needed"] is False for v in stored.manifest["vms"] if v["undo"])
    # Where each VM's files were, for a restore from this snapshot (the simulator's layout).
    ok = next(v for v in stored.manifest["vms"] if v["name"].endswith("ok"))
    assert ok["vmx_path"].endswith(f"{ok['name']}.vmx") and ok["disk_files"]
    assert all(f.startswith(ok["vmx_path"].split("]")[0] + "]") for f in ok["disk_files"])


def test_begin_and_end_are_idempotent(env):
    env.vm("once")
    coordinator = env.coordinator()
    first = coordinator.begin(env.dataset, run_id="fixed-run-id")
    again = coordinator.begin(env.dataset, run_id="fixed-run-id")
    assert again.to_dict() == first.to_dict()
    assert len(env.product_snapshots()) == 1
    snapshot = env.take_snapshot("idem")(first.properties())
    report = coordinator.end(first, snapshot)
    assert coordinator.end("fixed-run-id") == report
    assert env.outcome(report, "once")["undo"] == "removed"
    assert env.product_snapshots() == []
    assert env.outcome(report, "once")["mapping_ids"] == ["m1"]


def test_without_create_snapshot_ex_the_fallback_is_learnt_once_per_endpoint(start_vcsim, zfs_pool,
                                                                             tmp_path):
    old_sim = start_vcsim("-vm", "0", "-strict", "-no-snapshot-ex")
    si = inventory.connect_to(old_sim)
    env = EngineEnv.create(old_sim, zfs_pool, si, tmp_path)
    for i in range(5):
        env.vm(f"vm{i}")
    old_sim.stats(reset=True)
    report = env.coordinator(config=EngineConfig(limits=Limits(total=1))).run(
        env.dataset, env.take_snapshot("fallback"))
    calls = old_sim.stats()
    assert all(v["consistency"] == "quiesced" for v in report["vms"])
    assert calls["CreateSnapshotEx_Task"] == 1 and calls["CreateSnapshot_Task"] == 5


def test_lifetimes_are_each_snapshots_own(env):
    quick = env.vm("short-lived")
    slow = env.vm("long-lived")
    inventory.set_extra_config(quick, {"vcsim.delay.RemoveSnapshot_Task": "0"})
    inventory.set_extra_config(slow, {"vcsim.delay.RemoveSnapshot_Task": "1500"})
    report = env.coordinator().run(env.dataset, env.take_snapshot("lifetimes"))
    short, long_ = env.outcome(report, "short-lived"), env.outcome(report, "long-lived")
    assert long_["lifetime_s"] >= 1.4
    assert short["lifetime_s"] < long_["lifetime_s"] - 1.0


def test_reconcile_sweeps_marked_leftovers_and_nothing_else(env):
    vm = env.vm("orphan")
    inventory.wait(vm.CreateSnapshot_Task(name=f"{SNAPSHOT_NAME_PREFIX}lost-journal",
                                          memory=False, quiesce=False))
    inventory.wait(vm.CreateSnapshot_Task(name="nightly (the admin's own)", memory=False, quiesce=False))
    young = env.coordinator().reconcile(sweep=True)
    assert young["swept"] == []   # an unknown run's snapshot younger than the age limit stays
    assert len(env.product_snapshots()) == 1

    env.sim.stats(reset=True)
    result = env.coordinator(config=EngineConfig(marker_max_age_s=0)).reconcile(sweep=True)
    calls = env.sim.stats()
    assert result["swept"] == [f"{env.datastore}-orphan: {SNAPSHOT_NAME_PREFIX}lost-journal"]
    assert env.product_snapshots() == []
    assert inventory.snapshot_names(vm) == ["nightly (the admin's own)"]
    assert calls["RemoveSnapshot_Task"] == 1 and calls["RetrievePropertiesEx"] == 1
