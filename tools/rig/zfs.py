"""A real ZFS for tests and the demo: zfs-fuse with a pool in a file.

zfs-fuse is one daemon per machine; :func:`start_pool` starts it in the foreground (so its
pid is the one we hold), creates a pool whose only vdev is a sparse file, and returns a
handle whose :meth:`ZfsPool.destroy` exports the pool and stops that daemon by its pid,
whatever state the tests left it in.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


class ZfsRigError(RuntimeError):
    """zfs-fuse could not be started or the pool not created; the message says why."""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise ZfsRigError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclasses.dataclass
class ZfsPool:
    name: str
    mountpoint: Path
    image: Path
    daemon: subprocess.Popen | None   # None when an already-running daemon was used

    def dataset_mountpoint(self, dataset: str) -> Path:
        out = _run("zfs", "get", "-H", "-o", "value", "mountpoint", dataset).stdout.strip()
        return Path(out)

    def create_dataset(self, relative: str) -> str:
        name = f"{self.name}/{relative}"
        _run("zfs", "create", "-p", name)
        return name

    def snapshots(self, dataset: str | None = None) -> list[str]:
        cmd = ["zfs", "list", "-H", "-t", "snapshot", "-o", "name"]
        if dataset:
            cmd += ["-r", dataset]
        return [line for line in _run(*cmd).stdout.splitlines() if line]

    def destroy_dataset(self, name: str, recursive: bool = False) -> None:
        # zfs-fuse reports "dataset is busy" for a moment after the last access.
        for _ in range(50):
            proc = _run("zfs", "destroy", *(["-r"] if recursive else []), name, check=False)
            if proc.returncode == 0 or "does not exist" in proc.stderr:
                return
            if "busy" not in proc.stderr:
                break
            time.sleep(0.2)
        raise ZfsRigError(f"zfs destroy {name} failed: {proc.stderr.strip()}")

    def get(self, name: str, prop: str) -> str:
        return _run("zfs", "get", "-H", "-o", "value", prop, name).stdout.strip()

    def get_source(self, name: str, prop: str) -> str:
        """Where the value comes from: local, default, inherited from ..., or -."""
        return _run("zfs", "get", "-H", "-o", "source", prop, name).stdout.strip()

    def destroy(self, grace: float = 10.0) -> None:
        """Export the pool (retrying while zfs-fuse says it is busy), then stop the daemon we
        started by its pid: SIGTERM, SIGKILL after ``grace`` seconds, and reaped either way."""
        for _ in range(25):
            exported = _run("zpool", "export", "-f", self.name, check=False)
            if exported.returncode == 0 or "no such pool" in exported.stderr:
                break
            time.sleep(0.2)
        pools = _run("zpool", "list", "-H", "-o", "name", check=False).stdout.split()
        if any(p != self.name for p in pools):
            # Another session on this machine (outside tools/rig/isolation) uses this daemon.
            self.daemon = None
        if self.daemon is not None:
            stop_by_pid(self.daemon, grace)
        self.image.unlink(missing_ok=True)
        shutil.rmtree(self.mountpoint, ignore_errors=True)


def stop_by_pid(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not gone within ``grace``; always reaped."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _daemon_answers() -> bool:
    return _run("zpool", "list", "-H", check=False).returncode == 0


def start_pool(workdir: Path, name: str = "coordtest", size: str = "512M") -> ZfsPool:
    """Start zfs-fuse (unless one already answers) and create pool ``name`` in workdir."""
    if shutil.which("zfs-fuse") is None:
        raise ZfsRigError("zfs-fuse is not installed (run ./run setup)")
    if not os.path.exists("/dev/fuse"):
        raise ZfsRigError("/dev/fuse does not exist: zfs-fuse needs FUSE")
    workdir.mkdir(parents=True, exist_ok=True)
    daemon = None
    if not _daemon_answers():
        with open(workdir / "zfs-fuse.log", "ab") as log:
            daemon = subprocess.Popen(["zfs-fuse", "--no-daemon", "--no-kstat-mount"],
                                      stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _daemon_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                stop_by_pid(daemon, 1.0)
                raise ZfsRigError(f"zfs-fuse did not start; see {workdir / 'zfs-fuse.log'}")
            time.sleep(0.2)
    image = workdir / f"{name}.img"
    mountpoint = workdir / "mnt" / name
    pool = ZfsPool(name=name, mountpoint=mountpoint, image=image, daemon=daemon)
    try:
        # A pool of that name left by a killed run: take it away first.
        _run("zpool", "export", "-f", name, check=False)
        _run("truncate", "-s", size, str(image))
        mountpoint.parent.mkdir(parents=True, exist_ok=True)
        _run("zpool", "create", "-f", "-o", "cachefile=none", "-m", str(mountpoint), name,
             str(image))
    except Exception:
        pool.destroy()
        raise
    return pool
