"""libvirt guests in the engine, against the in-memory hypervisor (fake_hypervisor.py): the
freeze journaled before it is sent, thawed by end and by reconcile, read back (none frozen,
thawed early), the begin deadline, pause, the providers' strategies kept apart, and one run
covering VMware VMs and guests. tests/integration/test_libvirt_guest.py runs a real guest."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import factories as f
import pytest
from fake_hypervisor import FakeConnector, FakeVcenter
from truenas_vmware_coord.domain.model import PowerState, Provider
from truenas_vmware_coord.domain.selection import build_plan
from truenas_vmware_coord.engine.config import EngineConfig
from truenas_vmware_coord.engine.coordinator import Coordinator
from truenas_vmware_coord.engine.journal import ActionState, Journal


@dataclasses.dataclass
class World:
    vc: FakeVcenter
    host: FakeVcenter
    journal_path: Path

    def coordinator(self, *policies, **config) -> Coordinator:
        return Coordinator(connector=FakeConnector(self.vc, self.host), journal=Journal(self.journal_path),
                           mappings=[f.mapping(id="m1")], storage=f.storage, policies=policies,
                           config=EngineConfig(**config), local_endpoints=[f.GUEST_EP])


@pytest.fixture
def world(tmp_path) -> World:
    host = FakeVcenter([f.guest("g1"), f.guest("g2"), f.guest("elsewhere", path="/mnt/other/x.img")],
                       endpoint_id=f.GUEST_EP, guests=True)
    return World(FakeVcenter([f.vm("app1")]), host, tmp_path / "journal.sqlite")


def row(report: dict, name: str) -> dict:
    return next(v for v in report["vms"] if v["name"] == name)


def test_one_run_covers_vmware_vms_and_guests_each_its_own_way(world: World) -> None:
    journaled: list[tuple[str, str]] = []

    def before(op: str, target: str) -> None:
        if op == "freeze":   # the row is durable before the freeze is sent
            journaled.extend((a.vm_name, a.state.value) for a in Journal(world.journal_path).actions())

    world.host.before_call = before
    during: list[list[str]] = []
    report = world.coordinator().run("tank/vm", lambda p: during.append(world.host.frozen_guests()) or "t@s")
    assert during == [["g1", "g2"]] and world.host.frozen_guests() == []
    assert {v["name"]: (v["provider"], v["achieved"], v["undo"]) for v in report["vms"]} == {
        "app1": ("vsphere", "quiesce", "removed"), "g1": ("libvirt", "fsfreeze", "thawed"),
        "g2": ("libvirt", "fsfreeze", "thawed")}
    assert ("g1", "intent") in journaled or ("g2", "intent") in journaled
    assert row(report, "g1")["answer"] == "the guest agent froze 1 file system(s)"
    assert report["vmsynced"] is True and "elsewhere" not in {v["name"] for v in report["vms"]}


def test_a_guest_with_nothing_to_freeze_is_not_called_frozen_and_is_thawed(world: World) -> None:
    world.host.frozen_files("g1", 0)
    report = world.coordinator().run("tank/vm", lambda p: "t@s")
    g1 = row(report, "g1")
    assert (g1["achieved"], g1["consistency"]) == ("fsfreeze", "crash")
    assert g1["attempts"][-1]["result"] == "ignored"
    assert g1["undo"] == "thawed" and report["vmsynced"] is False


def test_a_guest_thawed_behind_the_engines_back_is_not_claimed_frozen(world: World) -> None:
    def take(_properties: dict[str, str]) -> str:
        world.host.thawed_by_someone("g2")
        return "t@s"

    report = world.coordinator().run("tank/vm", take)
    g2 = row(report, "g2")
    assert g2["consistency"] == "crash" and "thawed 0 of the 1" in g2["reasons"][-1]
    assert row(report, "g1")["consistency"] == "quiesced" and report["vmsynced"] is False
    assert report["properties"]["freenas:vmsynced"] == "N"


def test_a_freeze_without_an_answer_by_the_deadline_is_thawed_at_the_end(world: World) -> None:
    world.host.delay("freeze", "g1", 2.8)   # the freeze lands after the engine gave up (0.5 s + 2 s)
    context = world.coordinator(vm_deadline_s=0.5, begin_deadline_s=5.0).begin("tank/vm")
    g1 = next(v for v in context.vms if v.name == "g1")
    assert g1.achieved.value == "crash" and g1.attempts[0].result == "timed_out"
    [open_row] = [a for a in Journal(world.journal_path).actions(open_only=True) if a.vm_name == "g1"]
    assert open_row.state is ActionState.INTENT   # may still freeze: kept for the undo
    time.sleep(0.6)
    assert "g1" in world.host.frozen_guests()
    report = world.coordinator().end(context, "t@s")
    assert row(report, "g1")["undo"] == "thawed" and world.host.frozen_guests() == []


def test_reconcile_thaws_what_a_dead_run_froze(world: World) -> None:
    coordinator = world.coordinator()
    coordinator.begin("tank/vm")
    assert world.host.frozen_guests() == ["g1", "g2"]
    with Journal(world.journal_path)._tx() as db:   # its process died: a pid that is no more
        db.execute("UPDATE runs SET owner_pid = ?", (2 ** 22 + os.getpid(),))
    result = world.coordinator().reconcile(sweep=True)
    assert sorted((u["vm"], u["kind"], u["result"]) for u in result["undone"]) == [
        ("app1", "snapshot", "removed"), ("g1", "freeze", "thawed"), ("g2", "freeze", "thawed")]
    assert world.host.frozen_guests() == [] and result["still_open"] == 0


def test_a_failed_thaw_is_left_open_and_retried(world: World) -> None:
    world.host.trouble("thaw", "g1", "fail", "libvirt:86")
    report = world.coordinator().run("tank/vm", lambda p: "t@s")
    assert report["leftovers"] == ["g1: thaw_failed"] and world.host.frozen_guests() == ["g1"]
    world.host.clear("thaw", "g1")
    assert world.coordinator().reconcile()["still_open"] == 0 and world.host.frozen_guests() == []


def test_pause_for_guests_whose_policy_says_so_and_resume(world: World) -> None:
    rule = f.policy(ladder=["pause"], match={"provider": "libvirt", "name_glob": "g2"})
    seen: list[PowerState] = []
    report = world.coordinator(rule).run("tank/vm", lambda p: seen.append(world.host.power_of("g2")) or "t@s")
    g2 = row(report, "g2")
    assert seen == [PowerState.PAUSED] and world.host.power_of("g2") is PowerState.ON
    assert (g2["achieved"], g2["consistency"], g2["compliant"]) == ("pause", "crash", True)
    assert g2["undo"] == "resumed"


def test_a_ladder_may_list_both_kinds_and_each_vm_keeps_its_own(world: World) -> None:
    both = f.policy(ladder=["quiesce", "fsfreeze", "crash"])
    plan, _ = world.coordinator(both).plan("tank/vm")
    ladders = {v.facts.name: list(v.policy.ladder) for v in plan.vms}
    assert ladders == {"app1": ["quiesce", "crash"], "g1": ["fsfreeze", "crash"], "g2": ["fsfreeze", "crash"]}
    g1 = next(v for v in plan.vms if v.facts.name == "g1")
    assert g1.policy.pruned[0].reason.startswith("quiesce pruned: a strategy for VMware VMs")


@pytest.mark.parametrize(("agent", "blocker"), [
    ("no_channel", "no_agent_channel"), ("not_connected", "agent_not_answering"),
    ("not_answering", "agent_not_answering"), ("freeze_disabled", "agent_refuses_freeze"),
    ("already_frozen", "agent_refuses_freeze")])
def test_what_keeps_the_agent_from_freezing_prunes_fsfreeze(world: World, agent: str, blocker: str) -> None:
    guest = f.guest("g", agent=agent, agent_detail="as libvirt said it")
    plan = build_plan("tank/vm", inventories=[f.inventory(guest, endpoint=f.GUEST_EP, vcenter=None)],
                      mappings=[], storage=f.storage(), now=f.NOW)
    [vm] = plan.vms
    assert [b.kind.value for b in vm.blockers] == [blocker]
    assert vm.blockers[0].detail.endswith("as libvirt said it")
    world.host.facts = {guest.moref: guest}
    world.host.power = {guest.moref: PowerState.ON}
    world.host.snapshots = {guest.moref: []}
    plan, _ = world.coordinator().plan("tank/vm")
    [resolved] = [v for v in plan.vms if v.facts.provider is Provider.LIBVIRT]
    assert list(resolved.policy.ladder) == ["crash"]


def test_a_guest_paused_by_someone_else_is_left_alone_and_not_called_off(world: World) -> None:
    world.host.power[world.host._moref("g1")] = PowerState.PAUSED
    report = world.coordinator().run("tank/vm", lambda p: "t@s")
    g1 = row(report, "g1")
    assert (g1["achieved"], g1["consistency"], g1["undo"]) == ("crash", "crash", None)
    assert world.host.power_of("g1") is PowerState.PAUSED


def test_zvols_and_files_place_guests_on_their_datasets() -> None:
    guests = [f.guest("zvol", path="/dev/zvol/tank/vm/disk+0"), f.guest("file", path="/mnt/tank/vm/a/b.img"),
              f.guest("net", path="rbd:pool/img")]
    plan = build_plan("tank/vm", inventories=[f.inventory(*guests, endpoint=f.GUEST_EP, vcenter=None)],
                      mappings=[], storage=f.storage(), now=f.NOW, recursive=True)
    assert {v.facts.name: [d for file in v.files for d in file.datasets] for v in plan.vms} == {
        "zvol": ["tank/vm/disk 0"], "file": ["tank/vm"]}


def test_libvirt_hosts_without_the_binding_are_refused_as_configuration(tmp_path, monkeypatch):
    """A host without libvirt-python (an optional dependency) cannot serve a configuration that
    names libvirt hosts: the tool says so, naming the section, rather than failing unexpectedly."""
    from truenas_vmware_coord.cli.config import load_config
    from truenas_vmware_coord.domain.errors import InvalidInput

    config = tmp_path / "config.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n[libvirt.local]\nuri = "qemu:///system"\n')
    monkeypatch.setitem(sys.modules, "libvirt", None)   # as if not installed: import raises
    monkeypatch.delitem(sys.modules, "truenas_vmware_coord.libvirt.hypervisor", raising=False)
    with pytest.raises(InvalidInput) as refused:
        load_config(config).connector()
    assert [e.field for e in refused.value.errors] == ["libvirt"]
    assert "truenas-vmware-coord[libvirt]" in str(refused.value)
