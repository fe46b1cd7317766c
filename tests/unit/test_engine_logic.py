"""The engine's logic against the in-memory hypervisor: ladders, deadlines, undo,
reconcile and the order of journal writes and hypervisor calls. No simulator, no ZFS, no
root: these run in seconds. The simulator tests (tests/integration) keep the adapter and
the whole transaction honest against a real vSphere API."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import factories as f
import pytest
from fake_hypervisor import FakeConnector, FakeVcenter
from truenas_vmware_coord.domain.model import PowerState
from truenas_vmware_coord.engine import sessions
from truenas_vmware_coord.engine.config import EngineConfig
from truenas_vmware_coord.engine.coordinator import Coordinator
from truenas_vmware_coord.engine.journal import ActionState, Journal, JournalError
from truenas_vmware_coord.engine.limits import Limits


@dataclasses.dataclass
class World:
    vc: FakeVcenter
    journal_path: Path

    def coordinator(self, *policies, **config) -> Coordinator:
        return Coordinator(connector=FakeConnector(self.vc), journal=Journal(self.journal_path),
                           mappings=[f.mapping(id="m1")], storage=f.storage, policies=policies,
                           config=EngineConfig(**config))

    def journal_states(self) -> list[tuple[str, ActionState]]:
        return [(a.vm_name, a.state) for a in Journal(self.journal_path).actions()]


@pytest.fixture
def world(tmp_path) -> World:
    vms = [f.vm(n) for n in ("app1", "app2", "db", "scratch")] + [f.vm("cold", power=PowerState.OFF)]
    return World(FakeVcenter(vms), tmp_path / "journal.sqlite")


def taken(names: list[str]):
    def take(properties: dict[str, str]) -> str:
        names.append(properties["freenas:vmsynced"])
        return "tank/vm@snap"
    return take


def outcome(report: dict, name: str) -> dict:
    return next(v for v in report["vms"] if v["name"] == name)


def test_every_vm_gets_its_policy_and_nothing_is_left(world):
    rules = [f.policy(ladder=["power_off", "crash"], match={"name_glob": "db"}),
             dataclasses.replace(f.policy(ladder=["exclude"], match={"name_glob": "scratch"}), id=2,
                                 name="x", priority=2)]
    during: list[str] = []
    world.vc.before_call = lambda op, target: during.append(op)
    props: list[str] = []
    report = world.coordinator(*rules).run("tank/vm", taken(props))
    assert props == ["Y"] and report["vmsynced"] is True
    assert {v["name"]: v["consistency"] for v in report["vms"]} == {
        "app1": "quiesced", "app2": "quiesced", "db": "powered_off", "scratch": "excluded",
        "cold": "powered_off"}
    assert outcome(report, "db")["undo"] == "powered_on"
    assert world.vc.marked_snapshots() == [] and world.vc.not_running() == []
    assert not [s for _, s in world.journal_states() if s.open]
    assert ("shutdown", "vm-scratch") not in world.vc.calls and "suspend" not in during


def test_intent_is_journaled_before_the_hypervisor_sees_the_call(world):
    seen: list[tuple[str, list[ActionState]]] = []

    def check(operation: str, target: str) -> None:
        if operation in ("snapshot", "shutdown"):
            name = world.vc.facts[target].name
            seen.append((operation, [s for n, s in world.journal_states() if n == name]))

    world.vc.before_call = check
    world.coordinator(f.policy(ladder=["power_off"], match={"name_glob": "db"})).run("tank/vm", taken([]))
    assert seen and all(states and states[-1] is ActionState.INTENT for _, states in seen), seen


def test_a_refused_and_a_failed_rung_fall_down_the_ladder(world):
    world.vc.trouble("snapshot", "app1", "refuse", "InvalidState")
    world.vc.trouble("snapshot", "app2", "fail", "FileFault")
    report = world.coordinator(f.policy(ladder=["quiesce", "memory", "crash"], match={"name_glob": "app*"})
                               ).run("tank/vm", taken([]))
    first = outcome(report, "app1")
    assert [(a["strategy"], a["result"], a["fault_type"]) for a in first["attempts"]] == [
        ("quiesce", "failed", "InvalidState"), ("memory", "failed", "InvalidState")]
    assert first["consistency"] == "crash" and not first["compliant"]
    assert [a["result"] for a in outcome(report, "app2")["attempts"]] == ["failed", "failed"]
    assert report["vmsynced"] is False
    assert {s for n, s in world.journal_states() if n in ("app1", "app2")} == {ActionState.FAILED}


def test_a_hung_create_is_cancelled_at_the_vm_deadline_and_never_lands(world):
    world.vc.trouble("snapshot", "app1", "hang")
    started = time.monotonic()
    report = world.coordinator(vm_deadline_s=0.5, begin_deadline_s=5).run("tank/vm", taken([]))
    assert time.monotonic() - started < 3
    entry = outcome(report, "app1")
    assert entry["consistency"] == "crash" and entry["attempts"][0]["result"] == "timed_out"
    assert outcome(report, "app2")["consistency"] == "quiesced"
    assert world.vc.marked_snapshots() == []
    assert not [s for _, s in world.journal_states() if s.open]


def test_the_begin_deadline_lets_the_snapshot_go_and_end_removes_the_late_ones(world):
    def slow_reply(operation: str, target: str) -> None:
        if operation == "snapshot" and target in ("vm-app1", "vm-app2"):
            time.sleep(1.5)   # VMware holds the answer to the create call itself

    world.vc.before_call = slow_reply
    coordinator = world.coordinator(begin_deadline_s=0.5, vm_deadline_s=0.5)
    started = time.monotonic()
    context = coordinator.begin("tank/vm")
    assert time.monotonic() - started < 1.2
    assert context.vmsynced is False
    assert "begin deadline" in " ".join(outcome(context.to_dict(), "app1")["reasons"])
    assert outcome(context.to_dict(), "db")["consistency"] == "quiesced"
    time.sleep(1.5)   # the creates land after all
    assert len(world.vc.marked_snapshots()) == 4
    report = coordinator.end(context)
    assert world.vc.marked_snapshots() == [] and world.vc.not_running() == []
    assert report["leftovers"] == []


def test_a_create_whose_answer_was_lost_is_found_by_name_and_removed(world):
    world.vc.trouble("snapshot", "app1", "lose")
    report = world.coordinator().run("tank/vm", taken([]))
    assert outcome(report, "app1")["attempts"][0]["result"] == "timed_out"
    assert outcome(report, "app1")["undo"] == "removed"
    assert world.vc.marked_snapshots() == []


def test_a_shutdown_that_lands_late_is_powered_on_by_end(world):
    world.vc.delay("shutdown", "db", 1.0)
    rules = [f.policy(ladder=["power_off", "crash"], options={"shutdown_timeout_seconds": 10},
                    match={"name_glob": "db"})]
    coordinator = world.coordinator(*rules, vm_deadline_s=0.3, begin_deadline_s=5)
    context = coordinator.begin("tank/vm")
    entry = outcome(context.to_dict(), "db")
    assert entry["consistency"] == "crash" and entry["attempts"][0]["result"] == "failed"
    time.sleep(1.2)   # the guest went down after all
    assert world.vc.power_of("db") is PowerState.OFF
    report = coordinator.end(context)
    assert outcome(report, "db")["undo"] == "powered_on"
    assert world.vc.not_running() == []


def test_a_removal_that_fails_is_left_open_and_reconcile_finishes_it(world):
    world.vc.trouble("remove", "app1", "fail", "FileFault")
    coordinator = world.coordinator()
    report = coordinator.run("tank/vm", taken([]))
    assert outcome(report, "app1")["undo"] == "remove_failed"
    assert report["leftovers"] == ["app1: remove_failed"]
    world.vc.clear("remove", "app1")
    assert [u["result"] for u in coordinator.reconcile(sweep=False)["undone"]] == ["removed"]
    assert world.vc.marked_snapshots() == []
    assert coordinator.reconcile(sweep=False)["undone"] == []


def test_a_quiesce_vmware_ignored_is_read_back_as_crash(world):
    world.vc.quiesce_ignored.add("vm-app1")
    report = world.coordinator().run("tank/vm", taken([]))
    entry = outcome(report, "app1")
    assert entry["quiesced"] is False and entry["consistency"] == "crash"
    assert [a["result"] for a in entry["attempts"]] == ["ignored"]
    assert report["vmsynced"] is False


def test_an_unreachable_endpoint_still_lets_the_snapshot_be_taken(world):
    world.vc.unreachable = True
    props: list[str] = []
    report = world.coordinator().run("tank/vm", taken(props))
    assert props == ["N"] and report["vms"] == [] and f.VC_EP in report["endpoint_errors"]


def test_the_vcenter_lost_during_end_leaves_an_honest_report_and_reconcile_cleans_up(world):
    coordinator = world.coordinator(f.policy(ladder=["power_off"], match={"name_glob": "db"}))
    context = coordinator.begin("tank/vm")
    world.vc.unreachable = True
    report = coordinator.end(context)
    assert {v["name"]: v["undo"] for v in report["vms"] if v["undo"]} == {
        "app1": "remove_failed", "app2": "remove_failed", "scratch": "remove_failed", "db": "power_on_failed"}
    assert len(report["leftovers"]) == 4 and report["vmsynced"] is True
    world.vc.unreachable = False
    result = coordinator.reconcile(sweep=False)
    assert result["still_open"] == 0
    assert world.vc.marked_snapshots() == [] and world.vc.not_running() == []


@pytest.fixture
def hung(world, monkeypatch) -> Iterator[FakeVcenter]:
    """A vCenter that will stop answering; whatever is blocked on it is let go at the end."""
    monkeypatch.setattr(sessions, "CLOSE_GRACE_S", 0.3)
    yield world.vc
    world.vc.answer_again()


def test_a_vcenter_that_hangs_during_end_holds_it_for_the_end_deadline_only(world, hung):
    coordinator = world.coordinator(f.policy(ladder=["power_off"], match={"name_glob": "db"}),
                                    end_deadline_s=1.0)
    context = coordinator.begin("tank/vm")
    hung.stop_answering()
    started = time.monotonic()
    report = coordinator.end(context, "tank/vm@snap")
    took = time.monotonic() - started
    assert took < 1.0 + 2 * sessions.CLOSE_GRACE_S + 0.5, f"end took {took:.1f} s"
    assert {v["name"]: v["undo"] for v in report["vms"] if v["undo"]} == {
        "app1": "remove_failed", "app2": "remove_failed", "scratch": "remove_failed", "db": "power_on_failed"}
    assert len(report["leftovers"]) == 4 and report["vmsynced"] is True
    assert {state for _, state in world.journal_states()} == {ActionState.UNDO_FAILED}
    assert "clean-up deadline" in Journal(world.journal_path).actions()[0].error

    hung.answer_again()   # what was on the wire lands; reconcile finishes the rest
    assert coordinator.reconcile(sweep=False)["still_open"] == 0
    assert world.vc.marked_snapshots() == [] and world.vc.not_running() == []


def test_a_vcenter_that_hangs_during_begin_lets_the_snapshot_go_within_the_deadlines(world, hung):
    def hang_at_the_second_create(operation: str, target: str) -> None:
        if operation == "snapshot" and target == "vm-app2":
            hung.stop_answering()

    hung.before_call = hang_at_the_second_create
    coordinator = world.coordinator(begin_deadline_s=1.0, vm_deadline_s=1.0, end_deadline_s=1.0,
                                    limits=Limits(total=1, per_host=1, per_datastore=1))
    props: list[str] = []
    started = time.monotonic()
    report = coordinator.run("tank/vm", taken(props))
    took = time.monotonic() - started
    assert took < 2.0 + 2 * sessions.CLOSE_GRACE_S + 0.5, f"the run took {took:.1f} s"
    assert props == ["N"] and report["snapshot"] == "tank/vm@snap"
    # app1's snapshot was made before the hang, but what VMware did could not be read back.
    assert outcome(report, "app1")["attempts"][0]["result"] == "ok"
    assert {v["consistency"] for v in report["vms"]} == {"crash", "powered_off"}
    assert any("app1" in left for left in report["leftovers"]), report["leftovers"]

    hung.before_call = None
    hung.answer_again()
    time.sleep(0.2)   # the create that was on the wire lands
    assert coordinator.reconcile(sweep=True)["still_open"] == 0
    assert world.vc.marked_snapshots() == [] and world.vc.not_running() == []


def test_reconcile_against_a_hung_vcenter_gives_up_at_its_deadline(world, hung):
    coordinator = world.coordinator(end_deadline_s=1.0)
    context = coordinator.begin("tank/vm")
    journal = Journal(world.journal_path)
    journal._db.execute("UPDATE runs SET owner_pid = ? WHERE run_id = ?", (_dead_pid(), context.run_id))
    hung.stop_answering()
    started = time.monotonic()
    result = coordinator.reconcile(sweep=True)
    took = time.monotonic() - started
    # The undo and the sweep each have the end deadline: a session not even opened in it.
    assert took < 2 * 1.0 + 1.0, f"reconcile took {took:.1f} s"
    assert result["unreachable"] == [f.VC_EP] and result["still_open"] == 4
    assert f.VC_EP in result["endpoint_errors"]
    hung.answer_again()
    assert coordinator.reconcile(sweep=False)["still_open"] == 0
    assert world.vc.marked_snapshots() == []


def test_reconcile_leaves_a_live_run_alone_and_finishes_a_dead_one(world, tmp_path):
    coordinator = world.coordinator()
    live = coordinator.begin("tank/vm")   # owned by this process: alive
    journal = Journal(world.journal_path)
    journal._db.execute("UPDATE runs SET owner_pid = ? WHERE run_id = ?", (_dead_pid(), live.run_id))
    other = world.coordinator()
    detached = other.begin("tank/vm", detached=True)
    result = world.coordinator().reconcile(sweep=False)
    assert {u["run_id"] for u in result["undone"]} == {live.run_id}
    assert world.vc.marked_snapshots() == sorted(f"{n}: truenas-vmware-coord:{detached.run_id}"
                                                 for n in ("app1", "app2", "db", "scratch"))
    assert journal.run(live.run_id).ended and not journal.run(detached.run_id).ended


def test_the_sweep_removes_marked_snapshots_of_unknown_old_runs_only(world):
    def made(name: str, age_s: float):
        return dataclasses.replace(f.snapshot(name), create_time=time.time() - age_s)

    old = made("truenas-vmware-coord:0123456789abcdef", 7200)
    young = made("truenas-vmware-coord:fedcba9876543210", 60)
    foreign = made("before upgrade", 360000)
    world.vc.snapshots["vm-app1"] += [old, young, foreign]
    result = world.coordinator(marker_max_age_s=3600).reconcile(sweep=True)
    assert result["swept"] == ["app1: truenas-vmware-coord:0123456789abcdef"]
    assert [s.name for s in world.vc.snapshots["vm-app1"]] == [young.name, foreign.name]


def test_limits_hold_while_many_vms_are_snapshotted(tmp_path):
    vms = [f.vm(f"vm{i:02d}") for i in range(12)]
    vc = FakeVcenter(vms)
    running, peak = [0], [0]

    def count(operation: str, target: str) -> None:
        if operation == "snapshot":
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            running[0] -= 1

    vc.before_call = count
    world = World(vc, tmp_path / "j.sqlite")
    report = world.coordinator(limits=Limits(total=3)).run("tank/vm", taken([]))
    assert report["vmsynced"] and peak[0] <= 3


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_create_that_lands_after_the_run_ended_is_watched_for_and_removed(world):
    from truenas_vmware_coord.app.settling import settle
    world.vc.trouble("snapshot", "app1", "lose_late")
    world.vc.delay("snapshot", "app1", 1.0)
    coordinator = world.coordinator(in_doubt_window_s=10)
    report = coordinator.run("tank/vm", taken([]))
    assert report["in_doubt"] == ["app1"] and outcome(report, "app1")["undo"] == "in_doubt"
    assert world.vc.marked_snapshots() == []          # not landed yet
    assert settle(coordinator, poll_s=0.2) == []      # it landed, and was removed
    assert world.vc.marked_snapshots() == []
    assert not [s for _, s in world.journal_states() if s.open]


def test_a_create_in_doubt_is_closed_once_its_window_passed(world):
    world.vc.trouble("snapshot", "app1", "lose_late")
    world.vc.delay("snapshot", "app1", 60)           # it never lands within the test
    report = world.coordinator(in_doubt_window_s=0).run("tank/vm", taken([]))
    assert report["in_doubt"] == [] and outcome(report, "app1")["undo"] is None
    assert not [s for _, s in world.journal_states() if s.open]


class _FailingJournal(Journal):
    """A journal whose disk fills up after ``writes`` writes (a real JournalError)."""

    def __init__(self, path, writes: int) -> None:
        super().__init__(path)
        self.left = writes

    def _tx(self):
        self.left -= 1
        if self.left < 0:
            raise JournalError(f"journal {self.path} cannot be written: the file system is full")
        return super()._tx()

    def prune(self, *args):   # after the report: its failure is only logged
        self.left += 1
        return super().prune(*args)


def test_a_journal_that_fills_up_mid_run_never_leaves_a_vm_off_or_a_snapshot_behind(world):
    def run(writes: int) -> tuple[FakeVcenter, _FailingJournal, dict, list[str]]:
        vc = FakeVcenter([f.vm(n) for n in ("app1", "app2", "db")])
        journal = _FailingJournal(world.journal_path.with_name(f"j{writes}.sqlite"), writes)
        coordinator = Coordinator(connector=FakeConnector(vc), journal=journal, mappings=[f.mapping(id="m1")],
                                  storage=f.storage,
                                  policies=[f.policy(ladder=["power_off"], match={"name_glob": "db"})])
        props: list[str] = []
        return vc, journal, coordinator.run("tank/vm", taken(props)), props

    # The disk fills before each write of a run after its first (without that, nothing starts),
    # until a run needs no more writes than that (concurrent writes share transactions).
    writes = 0
    while True:
        writes += 1
        vc, journal, report, props = run(writes)
        if journal.left >= 0:
            break
        assert props, writes                                   # the ZFS snapshot was taken
        assert vc.marked_snapshots() == [] and vc.not_running() == [], writes
        assert any("full" in w for w in report["warnings"]), writes
    assert writes > 8, writes   # begin, the ZFS snapshot and end each met a full disk
