"""The demo (./run demo): one coordinated snapshot on the simulator and a real ZFS pool.

It builds a small, realistic inventory through the vSphere API — normal VMs with Tools,
one with a PCI passthrough GPU (strict mode: VMware refuses to snapshot it while it runs),
one whose .vmx lives on another datastore but with a disk on the mapped one, a powered-off
VM, a VM without Tools, a database VM that policy powers off, a scratch VM that policy
excludes — on an NFS datastore that is a zfs-fuse dataset, and beside them a local libvirt
guest (QEMU without KVM, a real qemu-guest-agent: tools/rig/guest.py) whose disk is on the
same dataset. Then it runs the real ``vmware-coord`` command: ``policy create``, ``plan``,
``snapshot`` (which prints the per-VM report: the guest's row says ``fsfreeze``); shows the
ZFS snapshot with its properties; proves that no VMware snapshot is left and no guest is
left frozen; restores one VM from the snapshot beside its original (``restore``: it says
which VMware snapshot it reverted to) and cleans that up (``restore cleanup``); and cleans
up. Where QEMU cannot run, it says so and goes on without the guest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.rig import guest, inventory, vcsim, zfs
from tools.rig.cli_config import write_cli_config

NAS = "nas.demo.local"
PASSWORD_ENV = "DEMO_VCENTER_PASSWORD"
POLICIES = [
    {"name": "gpu-hosts", "priority": 10, "ladder": ["crash"],
     "description": "VMware cannot snapshot a running VM with a passthrough GPU",
     "match": {"has_blocker": ["passthrough", "vgpu"]}},
    {"name": "databases", "priority": 20, "ladder": ["power_off", "crash"],
     "options": {"shutdown_timeout_seconds": 30},
     "match": {"name_glob": "db-*"}},
    {"name": "scratch", "priority": 30, "ladder": ["exclude"], "match": {"name_glob": "scratch-*"}},
]


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def build_inventory(sim: vcsim.Simulator) -> None:
    si = inventory.connect_to(sim)
    for name in ("app-01", "app-02", "app-03"):
        inventory.create_vm(si, name, "nfs01")
    gpu = inventory.create_vm(si, "gpu-01", "nfs01")
    inventory.add_passthrough(gpu, "NVIDIA A2")
    span = inventory.create_vm(si, "span-01", "nfs02")       # .vmx on the other datastore
    inventory.add_disk(span, "nfs01", unit=1)                 # ...one disk on the mapped one
    inventory.power_off(inventory.create_vm(si, "off-01", "nfs01"))
    inventory.create_vm(si, "notools-01", "nfs01", tools_running=False)
    inventory.create_vm(si, "db-01", "nfs01")
    inventory.create_vm(si, "scratch-01", "nfs01")
    si.content.sessionManager.Logout()


def vmware_coord(config: Path, *args: str, check_codes: tuple[int, ...] = (0, 1)) -> int:
    cli = Path(sys.executable).with_name("vmware-coord")
    print(f"$ vmware-coord {' '.join(args)}", flush=True)
    code = subprocess.run([str(cli), "-c", str(config), *args]).returncode
    if code not in check_codes:
        raise SystemExit(f"vmware-coord {args[0]} exited with {code}")
    return code


def vmware_coord_json(config: Path, *args: str) -> dict:
    cli = Path(sys.executable).with_name("vmware-coord")
    print(f"$ vmware-coord {' '.join(args)}", flush=True)
    proc = subprocess.run([str(cli), "-c", str(config), "--json", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vmware-coord {args[0]} exited with {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def restore_one(config: Path, dataset: str, sim: vcsim.Simulator) -> list[str]:
    """Restore app-01 beside itself, then clean it up; returns what is left of it."""
    doc = vmware_coord_json(config, "restore", f"{dataset}@demo-1", "--vm", "app-01")
    plan = doc["plan"]
    print(f"app-01 restored as {plan['new_name']} on {plan['host_name']}, datastore {plan['datastore']} "
          f"(the clone {plan['clone']}), NICs not connected\npoint: {plan['point']}")
    vmware_coord_json(config, "restore", "cleanup", doc["restore_id"])
    gone = subprocess.run(["zfs", "list", "-H", "-o", "name", plan["clone"]], capture_output=True).returncode
    si = inventory.connect_to(sim)
    try:
        left = [vm.name for vm in inventory.vms(si) if vm.name == plan["new_name"]]
        left += [ds.name for ds in inventory.datastores(si) if ds.name == plan["datastore"]]
    finally:
        si.content.sessionManager.Logout()
    left += [] if gone else [plan["clone"]]
    print(f"restore {doc['restore_id']} cleaned up: " + (", ".join(left) + " left" if left else
                                                        "no VM, datastore or clone left"))
    return left


def leftover_snapshots(sim: vcsim.Simulator) -> list[str]:
    si = inventory.connect_to(sim)
    try:
        return [f"{vm.name}: {name}" for vm in inventory.vms(si) for name in inventory.snapshot_names(vm)]
    finally:
        si.content.sessionManager.Logout()


def start_guest(disk_dir: Path) -> tuple[guest.Rig | None, guest.Guest | None]:
    """A libvirt guest on the dataset, or (None, None) with the reason printed."""
    missing = guest.missing_tools()
    if missing:
        print(f"QEMU cannot run here ({', '.join(missing)} missing): the demo goes on without a libvirt "
              "guest")
        return None, None
    rig = None
    try:
        rig = guest.Rig()
        booted = rig.boot("guest-01", disk_dir)
    except Exception as exc:  # noqa: BLE001 - the demo goes on without it
        if rig is not None:
            rig.stop()
        print(f"QEMU cannot run a guest here ({exc}): the demo goes on without a libvirt guest")
        return None, None
    print(f"libvirt guest guest-01 (QEMU, no KVM; qemu-guest-agent inside) at {rig.daemon.uri}, "
          f"its disk {disk_dir / 'guest-01.img'} on the dataset")
    return rig, booted


def frozen_guests(booted: guest.Guest) -> list[str]:
    """Guests that are frozen now: their writer (a line every 0.1 s) wrote nothing in 1.5 s."""
    before = booted.ticks()
    time.sleep(1.5)
    return [] if booted.ticks() > before else [booted.name]


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="coord-demo-"))
    pool = zfs.start_pool(workdir / "zfs", name="demo")
    sim = None
    rig = None
    try:
        dataset = pool.create_dataset("vmware/nfs01")
        other = pool.create_dataset("vmware/nfs02")
        mp, other_mp = pool.dataset_mountpoint(dataset), pool.dataset_mountpoint(other)
        section("vSphere simulator and ZFS")
        sim = vcsim.start("-vm", "1", "-strict", f"-nfs=nfs01={mp},host={NAS},path={mp}",
                          f"-nfs=nfs02={other_mp},host={NAS},path={other_mp}")
        print(f"simulator {sim.url} (pid {sim.pid}); certificate pinned: {sim.sha256}")
        print(f"datastore nfs01 is NFS {NAS}:{mp}, the ZFS dataset {dataset}")
        build_inventory(sim)
        rig, booted = start_guest(mp)
        config = write_cli_config(workdir / "config.toml", sim, workdir / "state", PASSWORD_ENV,
                                  [("nfs01", dataset)], [NAS],
                                  {"begin_deadline_seconds": 60, "vm_deadline_seconds": 30},
                                  restore_share="exported")   # the simulator reads the clone itself
        if rig is not None:
            with open(config, "a") as f:
                f.write(f'\n[libvirt.local]\nuri = "{rig.daemon.uri}"\n')
        os.environ[PASSWORD_ENV] = sim.password

        section("policies")
        for policy in POLICIES:
            vmware_coord(config, "policy", "create", json.dumps(policy), check_codes=(0,))
        vmware_coord(config, "policy", "list", check_codes=(0,))

        section("plan (dry run)")
        vmware_coord(config, "plan", dataset, check_codes=(0,))

        section("coordinated snapshot")
        code = vmware_coord(config, "--progress", "snapshot", dataset, "--name", "demo-1")
        verdict = ("every VM as its policy requires" if code == 0 else
                   "not every VM reached what its policy requires: see the table")
        print(f"(exit code {code}: {verdict})")

        section("the ZFS snapshot and its properties")
        print(subprocess.run(
            ["zfs", "get", "-H", "-o", "name,property,value",
             "freenas:vmsynced,org.truenas.vmware-coord:run,org.truenas.vmware-coord:summary",
             f"{dataset}@demo-1"], capture_output=True, text=True, check=True).stdout)

        section("VMware snapshots left behind")
        left = leftover_snapshots(sim)
        print("none" if not left else "\n".join(left))
        if rig is not None and booted is not None:
            section("libvirt guests left frozen")
            frozen = frozen_guests(booted)
            print("none: guest-01 writes again" if not frozen else "\n".join(frozen))
            left += frozen
        if left:
            return 1

        section("restore one VM from the snapshot, beside its original, and clean it up")
        return 1 if restore_one(config, dataset, sim) else 0
    finally:
        if rig is not None:
            rig.stop()
        if sim:
            sim.stop()
        pool.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
