"""A real libvirt guest with a real qemu-guest-agent (tools/rig/guest.py): QEMU without KVM,
Debian's kernel, busybox and qemu-ga in an initramfs built from Debian's packages, run by a
libvirtd of the test's own; its data disk is an ext4 image on a zfs-fuse dataset.

What is shown: the plan finds the guest by where its disk is; a coordinated snapshot
freezes the guest (its writer stalls, seen from inside through its console) while the ZFS
snapshot is taken, and the image in that snapshot is a clean ext4 (no journal to replay),
unlike one taken unfrozen; a missing agent and a hung agent cost the guest its freeze, never
the snapshot; a process SIGKILLed between freeze and thaw leaves the guest frozen until
``reconcile`` thaws it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from truenas_vmware_coord.domain.storage import StorageFacts
from truenas_vmware_coord.engine.config import EngineConfig
from truenas_vmware_coord.engine.coordinator import Coordinator
from truenas_vmware_coord.engine.journal import ActionState, Journal
from truenas_vmware_coord.libvirt.hypervisor import LibvirtConnector
from truenas_vmware_coord.libvirt.settings import LibvirtSettings

from tools.rig import guest as rig_guest
from tools.rig import zfs

AGENT_TIMEOUT = 3
ENDPOINT = "libvirt:local"
CLI = Path(sys.executable).with_name("vmware-coord")


@dataclass
class World:
    pool: zfs.ZfsPool
    dataset: str
    mountpoint: Path
    rig: rig_guest.Rig
    guest: rig_guest.Guest
    workdir: Path

    def coordinator(self, journal: Path, connector: LibvirtConnector | None = None) -> Coordinator:
        settings = LibvirtSettings("local", self.rig.daemon.uri, agent_timeout_s=AGENT_TIMEOUT)
        return Coordinator(
            connector=connector or LibvirtConnector([settings]), journal=Journal(journal), mappings=[],
            storage=lambda: StorageFacts.build([], {self.dataset: str(self.mountpoint)}),
            config=EngineConfig(begin_deadline_s=30, vm_deadline_s=20, end_deadline_s=30),
            local_endpoints=[ENDPOINT])

    def snapshot(self, name: str, properties: dict[str, str] | None = None) -> str:
        args = [a for k, v in sorted((properties or {}).items()) for a in ("-o", f"{k}={v}")]
        subprocess.run(["zfs", "snapshot", *args, f"{self.dataset}@{name}"], check=True)
        return f"{self.dataset}@{name}"

    def config(self) -> Path:
        path = self.workdir / "config.toml"
        path.write_text(f'state_dir = "{self.workdir / "state"}"\n\n[libvirt.local]\n'
                        f'uri = "{self.rig.daemon.uri}"\nagent_timeout_seconds = {AGENT_TIMEOUT}\n')
        return path


@pytest.fixture(scope="module")
def world(zfs_pool: zfs.ZfsPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    assert not rig_guest.missing_tools(), rig_guest.missing_tools()
    dataset = zfs_pool.create_dataset("kvm")
    mountpoint = zfs_pool.dataset_mountpoint(dataset)
    workdir = tmp_path_factory.mktemp("libvirt")
    rig = rig_guest.Rig()
    try:
        guest = rig.boot("guest-1", mountpoint)
        yield World(zfs_pool, dataset, mountpoint, rig, guest, workdir)
    finally:
        rig.stop()
        zfs_pool.destroy_dataset(dataset, recursive=True)


@pytest.fixture
def healthy_agent(world: World) -> Iterator[rig_guest.Guest]:
    """The guest with its agent answering, before and after the test."""
    world.guest.agent_connected()
    yield world.guest
    world.guest.run("pidof qemu-ga >/dev/null && agent_cont || agent_start")
    world.guest.agent_connected()


def advances(guest: rig_guest.Guest, seconds: float = 1.5) -> int:
    """How many lines the guest's writer wrote in ``seconds`` (~10 a second when it can)."""
    before = guest.ticks()
    time.sleep(seconds)
    return guest.ticks() - before


def image_in(world: World, snapshot: str, clone: str) -> Path:
    """The guest's disk image as the ZFS snapshot holds it (through a clone: zfs-fuse has no
    .zfs directory)."""
    subprocess.run(["zfs", "clone", snapshot, f"{world.dataset}/{clone}"], check=True)
    return world.pool.dataset_mountpoint(f"{world.dataset}/{clone}") / "guest-1.img"


def ext4_features(image: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("Filesystem features:"))


def last_line(image: Path) -> int:
    out = subprocess.run(["debugfs", "-R", "cat /log", str(image)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[-1])


def test_the_plan_finds_the_guest_by_its_disk_and_asks_its_agent(world: World, tmp_path: Path,
                                                                  healthy_agent: rig_guest.Guest) -> None:
    plan, errors = world.coordinator(tmp_path / "j.sqlite").plan(world.dataset)
    assert errors == {}
    [vm] = plan.vms
    assert (vm.facts.provider.value, vm.facts.name, vm.facts.agent) == ("libvirt", "guest-1", "answering")
    assert vm.facts.moref == healthy_agent.uuid
    assert vm.facts.guest_filesystems == ("/data (ext4 on vda)",)
    disk = str(world.mountpoint / "guest-1.img")
    assert [(f.path, f.datasets) for f in vm.files] == [(disk, (world.dataset,))]
    assert list(vm.policy.ladder) == ["fsfreeze", "crash"] and not vm.blockers
    elsewhere, _ = world.coordinator(tmp_path / "j.sqlite").plan(world.pool.name)
    assert elsewhere.vms == ()   # the pool's own dataset holds no disk of it (not recursive)


def test_the_guest_is_frozen_while_the_zfs_snapshot_is_taken(world: World, tmp_path: Path,
                                                             healthy_agent: rig_guest.Guest) -> None:
    guest = healthy_agent
    assert advances(guest) >= 5, "the writer runs before the freeze"
    seen: dict[str, int] = {}

    def take(properties: dict[str, str]) -> str:
        seen["at_freeze"] = guest.ticks()
        seen["while_frozen"] = advances(guest)
        return world.snapshot("frozen", properties)

    report = world.coordinator(tmp_path / "j.sqlite").run(world.dataset, take)
    [vm] = report["vms"]
    assert (vm["provider"], vm["achieved"], vm["consistency"], vm["undo"]) == (
        "libvirt", "fsfreeze", "quiesced", "thawed")
    assert vm["answer"] == "the guest agent froze 1 file system(s)" and report["vmsynced"] is True
    assert seen["while_frozen"] <= 1, "a write in flight at most: the writer stalls while frozen"
    assert advances(guest) >= 5, "thawed: the writer goes on"
    frozen = image_in(world, f"{world.dataset}@frozen", "frozen-copy")
    assert "needs_recovery" not in ext4_features(frozen)   # a frozen ext4 flushed its journal
    assert abs(last_line(frozen) - seen["at_freeze"]) <= 1
    unfrozen = image_in(world, world.snapshot("unfrozen"), "unfrozen-copy")
    assert "needs_recovery" in ext4_features(unfrozen)     # what a snapshot of a running guest holds


def test_a_missing_agent_costs_the_freeze_not_the_snapshot(world: World, tmp_path: Path,
                                                           healthy_agent: rig_guest.Guest) -> None:
    healthy_agent.run("agent_kill")
    coordinator = world.coordinator(tmp_path / "j.sqlite")
    [vm] = coordinator.plan(world.dataset)[0].vms
    assert [b.kind.value for b in vm.blockers] == ["agent_not_answering"]
    assert "not connected" in vm.blockers[0].detail and list(vm.policy.ladder) == ["crash"]
    report = coordinator.run(world.dataset, lambda p: world.snapshot("no-agent", p))
    [outcome] = report["vms"]
    assert (outcome["achieved"], outcome["consistency"], outcome["compliant"]) == ("crash", "crash", False)
    assert report["vmsynced"] is False
    assert world.pool.get(f"{world.dataset}@no-agent", "freenas:vmsynced") == "N"


class _AgentHangsAfterInventory(LibvirtConnector):
    """The agent hangs between the plan and the freeze (SIGSTOP in the guest)."""

    def __init__(self, settings: LibvirtSettings, guest: rig_guest.Guest) -> None:
        super().__init__([settings])
        self._guest = guest

    def open(self, endpoint_id: str):  # noqa: ANN201 - LibvirtHypervisor
        hv = super().open(endpoint_id)
        inventory = hv.inventory

        def then_hang():  # noqa: ANN202
            found = inventory()
            self._guest.run("agent_stop")
            return found

        hv.inventory = then_hang
        return hv


def test_a_hung_agent_is_given_up_within_its_timeout_and_thawed_later(
        world: World, tmp_path: Path, healthy_agent: rig_guest.Guest) -> None:
    settings = LibvirtSettings("local", world.rig.daemon.uri, agent_timeout_s=AGENT_TIMEOUT)
    coordinator = world.coordinator(tmp_path / "j.sqlite", _AgentHangsAfterInventory(settings, healthy_agent))
    started = time.monotonic()
    context = coordinator.begin(world.dataset)
    assert time.monotonic() - started < 4 * AGENT_TIMEOUT   # not the 30 s begin deadline
    [vm] = context.vms
    assert vm.achieved.value == "crash" and vm.attempts[0].result == "timed_out"
    assert "not available" in vm.attempts[0].message or "not responding" in vm.attempts[0].message
    report = coordinator.end(context, world.snapshot("hung", context.properties()))
    assert report["leftovers"] == ["guest-1: thaw_failed"]   # still hung: the thaw waits for reconcile
    healthy_agent.run("agent_cont")
    result = world.coordinator(tmp_path / "j.sqlite").reconcile(sweep=True)
    assert [(u["vm"], u["result"]) for u in result["undone"]] == [("guest-1", "thawed")]
    assert result["still_open"] == 0 and advances(healthy_agent) >= 5


KILLED_BETWEEN_FREEZE_AND_THAW = textwrap.dedent("""
    import os, signal, sys
    from truenas_vmware_coord.cli.main import Cli, build_parser
    from truenas_vmware_coord.zfs.shell import LocalShell
    cli = Cli(build_parser().parse_args(["-c", sys.argv[1], "plan", sys.argv[2]]), LocalShell())
    context = cli.coordinator().begin(sys.argv[2])
    print(context.vms[0].achieved.value, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)   # no end, no finally: as a power cut would
""")


def test_sigkill_between_freeze_and_thaw_leaves_it_to_reconcile(world: World,
                                                                 healthy_agent: rig_guest.Guest) -> None:
    config = world.config()
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_FREEZE_AND_THAW, str(config),
                             world.dataset], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.strip() == "fsfreeze"
    [action] = Journal(world.workdir / "state" / "journal.sqlite").actions(open_only=True)
    assert (action.kind.value, action.state) == ("freeze", ActionState.DONE)
    assert advances(healthy_agent) <= 1, "a frozen guest never thaws by itself"
    done = subprocess.run([str(CLI), "-c", str(config), "--json", "reconcile"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [(u["vm"], u["kind"], u["result"]) for u in json.loads(done.stdout)["undone"]] == [
        ("guest-1", "freeze", "thawed")]
    assert advances(healthy_agent) >= 5


def test_the_command_line_coordinates_the_guest(world: World, healthy_agent: rig_guest.Guest) -> None:
    done = subprocess.run([str(CLI), "-c", str(world.config()), "--json", "snapshot", world.dataset,
                           "--name", "cli"], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PATH": f"{CLI.parent}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    [vm] = json.loads(done.stdout)["vms"]
    assert (vm["name"], vm["achieved"], vm["undo"]) == ("guest-1", "fsfreeze", "thawed")
    assert world.pool.get(f"{world.dataset}@cli", "freenas:vmsynced") == "Y"
