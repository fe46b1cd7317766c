"""The benchmark's world: a zfs-fuse dataset behind an NFS datastore, and N VMs on it.

One simulator per (N, per-call delay) cell, because delays are startup flags. The NFS
datastore ``nfs01`` is backed by the dataset's mountpoint (as in tools/demo.py), so the
ZFS snapshot captures the VMs' files. The N VMs are created through the vSphere API with
everything in one ``CreateVM_Task`` (the .vmx and a disk on ``nfs01``, Tools running via
the simulator's ``SET.`` extraConfig) plus a power-on, spread over every host: two calls
per VM, issued from a few threads (about 1,000 VMs in ~10 s here). The simulator's own
default VMs are not used because they live on ``LocalDS_0``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from pyVmomi import vim, vmodl

from tools.rig import inventory, isolation, vcsim, zfs

NAS = "nas.bench.local"
DATASTORE = "nfs01"
POOL_NAME = "benchpool"
PC = vmodl.query.PropertyCollector


@dataclasses.dataclass
class Cell:
    """One simulator configuration: VM count and per-call latencies (ms)."""

    vms: int
    op_delay_ms: int        # -method-delay for CreateSnapshot_Task and RemoveSnapshot_Task
    rtt_ms: int = 0         # -delay: added to every SOAP call (network round trip)
    sim: str = "rig"        # the simulator build (tools/rig/vcsim.py VARIANTS)

    @property
    def key(self) -> str:
        return f"sim={self.sim} N={self.vms} d={self.op_delay_ms}ms rtt={self.rtt_ms}ms"


@dataclasses.dataclass
class World:
    """A running simulator whose N VMs live on a mapped dataset."""

    cell: Cell
    sim: vcsim.Simulator
    dataset: str
    mountpoint: Path

    def spec(self) -> dict[str, object]:
        """What a runner child needs to reach this world (no secrets beyond the sim's)."""
        return {"host": self.sim.host, "port": self.sim.port, "username": self.sim.username,
                "password": self.sim.password, "sha256": self.sim.sha256, "nas": NAS,
                "datastore": DATASTORE, "dataset": self.dataset,
                "mountpoint": str(self.mountpoint), "vms": self.cell.vms}


class Rig:
    """zfs-fuse for the whole invocation; one simulator + dataset per cell."""

    def __init__(self) -> None:
        if isolation.isolated():
            isolation.private_zfs_runtime()
        self.workdir = Path(tempfile.mkdtemp(prefix="coord-bench-"))
        # Named per process: other test sessions on this machine share the zfs-fuse daemon.
        self.pool = zfs.start_pool(self.workdir / "zfs", name=f"{POOL_NAME}{os.getpid()}", size="2G")
        self._serial = 0

    def start(self, cell: Cell) -> World:
        self._serial += 1
        dataset = self.pool.create_dataset(f"vmware/cell{self._serial}")
        mountpoint = self.pool.dataset_mountpoint(dataset)
        flags = ["-vm", "0", f"-nfs={DATASTORE}={mountpoint},host={NAS},path={mountpoint}"]
        if cell.op_delay_ms:
            # The engine creates with CreateSnapshotEx_Task where it exists (the launcher
            # adds it): the same latency for both ways of creating a snapshot.
            flags.append("-method-delay=" + ",".join(
                f"{m}:{cell.op_delay_ms}" for m in
                ("CreateSnapshot_Task", "CreateSnapshotEx_Task", "RemoveSnapshot_Task")))
        if cell.rtt_ms:
            flags.append(f"-delay={cell.rtt_ms}")
        sim = vcsim.start(*flags, variant=cell.sim)
        try:
            populate(sim, cell.vms)
        except BaseException:
            sim.stop()
            raise
        return World(cell, sim, dataset, mountpoint)

    def stop(self, world: World) -> None:
        world.sim.stop()
        self.pool.destroy_dataset(world.dataset, recursive=True)

    def close(self) -> None:
        self.pool.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)


def populate(sim: vcsim.Simulator, count: int, workers: int = 8) -> None:
    """Create ``count`` powered-on VMs with Tools running on ``nfs01``, round-robin over hosts."""
    si = inventory.connect_to(sim)
    si._stub.poolSize = max(si._stub.poolSize, workers)
    try:
        content = si.RetrieveContent()
        dc = content.rootFolder.childEntity[0]
        hosts = inventory._objects(si, vim.HostSystem)
        placements = [(h, h.parent.resourcePool) for h in hosts]

        def create(i: int) -> None:
            host, pool = placements[i % len(placements)]
            name = f"vm-{i:05d}"
            scsi = vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0, sharedBus="noSharing")
            disk = vim.vm.device.VirtualDisk(
                key=-200, controllerKey=1000, unitNumber=0, capacityInKB=1024,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{DATASTORE}] {name}/{name}.vmdk", diskMode="persistent",
                    thinProvisioned=True))
            spec = vim.vm.ConfigSpec(
                name=name, guestId="otherGuest64", numCPUs=1, memoryMB=256,
                files=vim.vm.FileInfo(vmPathName=f"[{DATASTORE}]"),
                deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=scsi),
                              vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create",
                                                              device=disk)],
                extraConfig=[vim.option.OptionValue(key="SET.guest.toolsRunningStatus",
                                                    value="guestToolsRunning")])
            # The simulator finishes these tasks before it answers; no wait is needed.
            task = dc.vmFolder.CreateVM_Task(spec, pool, host)
            vm = vim.VirtualMachine(_task_result_moref(task), stub=si._stub)
            vm.PowerOnVM_Task()

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
            for future in [ex.submit(create, i) for i in range(count)]:
                future.result()
    finally:
        si.content.sessionManager.Logout()


def _task_result_moref(task: vim.Task) -> str:
    info = task.info
    if info.state != vim.TaskInfo.State.success:
        raise RuntimeError(f"CreateVM_Task ended {info.state}: {info.error}")
    return info.result._moId


def leftover_snapshots(sim: vcsim.Simulator) -> int:
    """VMware snapshots still present on any VM (a run must leave none); one retrieval."""
    si = inventory.connect_to(sim)
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        try:
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[PC.TraversalSpec(
                    name="v", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["snapshot"])])
            result = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        finally:
            view.DestroyView()
        return sum(1 for oc in (result.objects if result else ()) for p in oc.propSet or () if p.val)
    finally:
        si.content.sessionManager.Logout()
