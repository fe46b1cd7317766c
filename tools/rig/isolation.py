"""Run a command in a mount namespace of its own, with a zfs-fuse of its own.

zfs-fuse is one daemon per socket, and the socket lives in /var/run/zfs: every test
session and benchmark on a machine would share one daemon, and one wedged mount there
stalls every ``zfs create``. In a private mount namespace (``unshare -m``) the zfs-fuse
runtime directories get a private tmpfs, so the command starts a daemon of its own and
stops it at the end, touching no one else's pools; mounts a test makes (a read-only or a
full state directory) vanish with the namespace even if the test is killed.

    python -m tools.rig.isolation -- COMMAND...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

MARKER = "VMWARE_COORD_PRIVATE_MOUNTS"
ZFS_RUNTIME_DIRS = ("/var/run/zfs", "/run/lock/zfs")


def isolated() -> bool:
    """Whether this process runs in a namespace made by ``isolated_command``."""
    return bool(os.environ.get(MARKER))


def isolated_command(argv: list[str]) -> list[str] | None:
    """The command that re-runs ``argv`` in a private mount namespace, or None if it cannot."""
    if isolated() or shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "--propagation", "private", *argv]


def private_zfs_runtime() -> None:
    """Inside the namespace: a private tmpfs for zfs-fuse's socket and lock."""
    for directory in ZFS_RUNTIME_DIRS:
        os.makedirs(directory, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", directory], check=True)


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if isolated():
        private_zfs_runtime()
        os.execvp(command[0], command)  # noqa: S606 - an argument vector, no shell
    wrapped = isolated_command([sys.executable, "-m", "tools.rig.isolation", "--", *command])
    if wrapped is None:
        print("note: no private mount namespace here; sharing the machine's zfs-fuse", file=sys.stderr)
        os.execvp(command[0], command)  # noqa: S606 - an argument vector, no shell
    return subprocess.run(wrapped, env=os.environ | {MARKER: "1"}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
