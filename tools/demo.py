"""The demo (./run demo). Until the engine lands it runs the rig's smoke scenario:
a simulator whose NFS datastore is a zfs-fuse dataset, a VM written onto it, a ZFS
snapshot with a user property, and a clean teardown."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tools.rig import inventory, vcsim, zfs


def main() -> int:
    print("rig smoke scenario (the coordinated-snapshot demo arrives with the engine)")
    workdir = Path(tempfile.mkdtemp(prefix="coord-demo-"))
    pool = zfs.start_pool(workdir, name="demo")
    sim = None
    try:
        dataset = pool.create_dataset("vmware/nfs01")
        mountpoint = pool.dataset_mountpoint(dataset)
        sim = vcsim.start("-vm", "1", "-strict", f"-nfs=nfs01={mountpoint}")
        print(f"simulator: {sim.url} (pid {sim.pid}), certificate sha256 {sim.sha256}")
        si = inventory.connect_to(sim)
        vm = inventory.create_vm(si, "app-01", "nfs01")
        print(f"VM {vm.name}: {vm.config.files.vmPathName}")
        subprocess.run(["zfs", "snapshot", "-o", "org.truenas.vmware-coord:demo=1",
                        f"{dataset}@demo"], check=True)
        print(subprocess.run(["zfs", "list", "-t", "snapshot", "-o", "name,org.truenas.vmware-coord:demo"],
                             capture_output=True, text=True, check=True).stdout)
    finally:
        if sim:
            sim.stop()
        pool.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
