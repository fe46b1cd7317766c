"""A real libvirt guest for tests and the demo: QEMU (TCG, no KVM needed) booting Debian's
kernel and an initramfs of busybox and the real qemu-guest-agent, run by a libvirt daemon
of its own.

- ``build_image``: the kernel from Debian's ``linux-image-*-cloud-amd64`` package and the
  agent from ``qemu-guest-agent`` (fetched with ``apt-get download`` and unpacked, never
  installed: nothing of theirs runs on this machine), the virtio modules the agent's port
  and the data disk need, busybox-static, and ``/init`` below; cached by content.
- ``LibvirtDaemon``: ``libvirtd`` in session mode as ``nobody`` (every path under one
  directory, its socket ``<dir>/run/libvirt/libvirt-sock``, no TCP), stopped by its pid.
  Root may talk to it (the URI is ``qemu+unix:///session?socket=...``, the shape of
  TrueNAS's ``qemu+unix:///system?socket=/run/truenas_libvirt/libvirt-sock``).
- ``Guest``: one domain with an ext4 data disk (a raw file, typically on a zfs-fuse
  dataset), the agent channel, and its serial console on a unix socket: the rig reads what
  the guest prints and sends it shell commands (``agent_stop`` and friends in ``/init``).
  In the guest a writer appends a numbered line to ``/data/log`` every 0.1 s and prints
  ``tick N`` after each write: frozen, it stalls, which is how tests see a freeze from inside.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import xml.sax.saxutils
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "guest"
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "virtio_blk", "virtio_console")
UNPRIVILEGED = "nobody"
QEMU = "/usr/bin/qemu-system-x86_64"

# The guest's /init (busybox sh). Commands arrive on the console, one per line.
INIT = r"""#!/bin/sh
export PATH=/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
mkdir -p /run /data /tmp
for i in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /data && echo "coord: data mounted"
agent_port() {
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && echo /dev/$(basename $p)
  done
}
agent_start() {   # extra arguments go to qemu-ga (e.g. -b to disable commands)
  port=$(agent_port)
  [ -n "$port" ] || { echo "coord: no agent port"; return; }
  qemu-ga -m virtio-serial -p "$port" -t /run "$@" </dev/null >/dev/null 2>&1 &
  echo "coord: agent started pid=$!"
}
agent_stop() { kill -STOP $(pidof qemu-ga); echo "coord: agent stopped"; }
agent_cont() { kill -CONT $(pidof qemu-ga); echo "coord: agent continued"; }
agent_kill() { kill -KILL $(pidof qemu-ga); sleep 0.2; echo "coord: agent killed"; }
writer() {
  i=0
  while :; do echo "line $i" >> /data/log; echo "tick $i" > /dev/ttyS0; i=$((i+1)); usleep 100000; done
}
[ "$(cat /proc/cmdline | grep -c coord.agent=0)" = 1 ] || agent_start
[ -d /data/lost+found ] && writer &
stty -echo -F /dev/ttyS0 2>/dev/null
echo "coord: ready"
while read -r line; do eval "$line"; echo "coord: done $?"; done < /dev/ttyS0
"""


class GuestRigError(RuntimeError):
    """The guest could not be built or started; the message says why."""


def _run(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    if proc.returncode != 0:
        raise GuestRigError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def missing_tools() -> list[str]:
    """What this machine lacks to run a guest (empty: it can)."""
    wanted = {"qemu-system-x86_64": QEMU, "libvirtd": "/usr/sbin/libvirtd", "busybox": "/bin/busybox",
              "apt-get": "/usr/bin/apt-get", "dpkg-deb": "/usr/bin/dpkg-deb", "mkfs.ext4": "/sbin/mkfs.ext4"}
    gone = [name for name, path in wanted.items() if not os.access(path, os.X_OK)]
    try:
        import libvirt  # noqa: F401 - only whether it imports
    except ImportError:
        gone.append("libvirt-python")
    return gone


# --- the image -------------------------------------------------------------------------------


def _kernel_package() -> str:
    """The kernel package the cloud metapackage points at (virtio drivers, small)."""
    for line in _run("apt-cache", "depends", "linux-image-cloud-amd64").splitlines():
        found = re.match(r"\s*Depends: (linux-image-\S+-cloud-amd64)$", line)
        if found:
            return found.group(1)
    raise GuestRigError("apt-cache knows no linux-image-cloud-amd64 (run apt-get update)")


def _unpacked(package: str) -> Path:
    """``package`` downloaded with apt-get and unpacked (not installed) under the cache."""
    target = CACHE / package
    if (target / ".unpacked").exists():
        return target
    download = Path(tempfile.mkdtemp(prefix="deb-", dir=CACHE))
    try:
        try:
            _run("apt-get", "download", package, cwd=download)
        except GuestRigError:
            _run("apt-get", "update", "-qq")
            _run("apt-get", "download", package, cwd=download)
        deb = next(download.glob("*.deb"))
        shutil.rmtree(target, ignore_errors=True)
        _run("dpkg-deb", "-x", str(deb), str(target))
        (target / ".unpacked").touch()
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return target


def _module_order(found: dict[str, Path]) -> list[str]:
    """MODULES with their dependencies first (read from each module's .modinfo ``depends=``)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        depends = re.search(rb"\0depends=([^\0]*)\0", found[name].read_bytes())
        for dep in filter(None, (depends.group(1).decode().split(",") if depends else [])):
            visit(dep)
        order.append(name)

    for name in MODULES:
        visit(name)
    return order


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries ``binary`` loads on this machine (its own Debian release's)."""
    return [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*) \(0x", _run("ldd", str(binary)))]


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An initramfs in the kernel's "newc" cpio format: (name, mode, content or link target)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def build_image() -> GuestImage:
    """Kernel and initramfs, built from Debian's packages (cached until an input changes)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    kernel_pkg = _unpacked(_kernel_package())
    agent_pkg = _unpacked("qemu-guest-agent")
    kernel = next((kernel_pkg / "boot").glob("vmlinuz-*"))
    found = {p.name.removesuffix(".ko"): p for p in (kernel_pkg / "lib" / "modules").rglob("*.ko")}
    order = _module_order(found)
    agent = agent_pkg / "usr" / "sbin" / "qemu-ga"
    files: dict[str, tuple[int, bytes]] = {
        "init": (0o100755, INIT.encode()), "bin/busybox": (0o100755, Path("/bin/busybox").read_bytes()),
        "usr/sbin/qemu-ga": (0o100755, agent.read_bytes()),
        "lib/modules/order": (0o100644, "\n".join(order).encode())}
    files |= {f"lib/modules/{m}.ko": (0o100644, found[m].read_bytes()) for m in order}
    files |= {str(lib).lstrip("/"): (0o100755, lib.read_bytes())
              for lib in _libraries(agent)}
    applets = _run("/bin/busybox", "--list").split()
    digest = hashlib.sha256(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, (_, v) in files.items()))
                            .encode()).hexdigest()[:16]
    initrd = CACHE / f"initrd-{digest}.gz"
    if not initrd.exists():
        dirs = sorted({str(Path(name).parents[i]) for name in files for i in range(len(Path(name).parts) - 1)}
                      | {"bin", "dev", "proc", "sys", "run", "data", "tmp", "usr/sbin"})
        entries = [(d, 0o040755, b"") for d in dirs if d != "."]
        entries += [(name, mode, data) for name, (mode, data) in sorted(files.items())]
        entries += [(f"bin/{a}", 0o120777, b"busybox") for a in applets if a != "busybox"]
        partial = initrd.with_suffix(".partial")
        partial.write_bytes(gzip.compress(_cpio(entries), compresslevel=1))
        partial.rename(initrd)
    let_others_through(CACHE)   # QEMU, as the daemon's user, reads kernel and initramfs
    return GuestImage(kernel, initrd)


# --- the daemon ------------------------------------------------------------------------------


class LibvirtDaemon:
    """``libvirtd`` in session mode as an unprivileged user, everything under a directory of
    its own, short because the agent's socket path below it must fit a UNIX socket (108)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="lv", dir="/tmp"))
        self.home = self.directory / "h"
        self.socket = self.home / "run" / "libvirt" / "libvirt-sock"
        self.uri = f"qemu+unix:///session?socket={self.socket}"
        self.log = self.directory / "libvirtd.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 20.0) -> LibvirtDaemon:
        user = pwd.getpwnam(UNPRIVILEGED)
        self.home.mkdir(parents=True, exist_ok=True)
        let_others_through(self.directory)
        os.chown(self.home, user.pw_uid, user.pw_gid)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home),
               "XDG_RUNTIME_DIR": str(self.home / "run"), "XDG_CONFIG_HOME": str(self.home / "config"),
               "XDG_CACHE_HOME": str(self.home / "cache"), "XDG_DATA_HOME": str(self.home / "data")}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                 "/usr/sbin/libvirtd", "--timeout", "0"], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise GuestRigError(f"libvirtd did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the daemon by its pid (destroy its domains first: their QEMUs outlive it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


# --- the guest -------------------------------------------------------------------------------


def make_data_disk(path: Path, size_mb: int = 32) -> Path:
    """An empty ext4 file system in a raw file, owned by the daemon's user."""
    with open(path, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    _run("mkfs.ext4", "-q", "-F", "-L", "coord-data", str(path))
    user = pwd.getpwnam(UNPRIVILEGED)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def domain_xml(name: str, image: GuestImage, disk: Path, console: Path, agent_channel: bool = True,
               start_agent: bool = True) -> str:
    q = xml.sax.saxutils.quoteattr
    channel = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
               if agent_channel else "")
    cmdline = "console=ttyS0 quiet panic=-1" + ("" if start_agent else " coord.agent=0")
    return f"""<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>192</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd><cmdline>{cmdline}</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='writeback'/>
      <source file={q(str(disk))}/><target dev='vda' bus='virtio'/></disk>
    {channel}
    <serial type='unix'><source mode='bind' path={q(str(console))}/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


class Guest:
    """A running domain and its console (what it prints, and a way to send it commands)."""

    def __init__(self, connection, name: str, console: Path) -> None:  # noqa: ANN001 - libvirt.virConnect
        self.connection = connection
        self.name = name
        self.console_path = console
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None

    @classmethod
    def boot(cls, connection, name: str, image: GuestImage, disk: Path, directory: Path,  # noqa: ANN001
             agent_channel: bool = True, start_agent: bool = True, timeout: float = 120.0) -> Guest:
        # QEMU (as the daemon's user) binds the console socket: in a directory of that user's.
        user = pwd.getpwnam(UNPRIVILEGED)
        (directory / "consoles").mkdir(exist_ok=True)
        os.chown(directory / "consoles", user.pw_uid, user.pw_gid)
        console = directory / "consoles" / name
        guest = cls(connection, name, console)
        connection.createXML(domain_xml(name, image, disk, console, agent_channel, start_agent), 0)
        guest._attach(timeout)
        guest.wait_for("coord: ready", timeout)
        return guest

    @property
    def domain(self):  # noqa: ANN201 - libvirt.virDomain
        return self.connection.lookupByName(self.name)

    @property
    def uuid(self) -> str:
        return self.domain.UUIDString()

    def _attach(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.console_path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise GuestRigError(f"the console of {self.name} never opened") from None
                time.sleep(0.05)
        self._sock = sock
        self._reader = threading.Thread(target=self._read, name=f"console-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        assert self._sock is not None
        while True:
            try:
                chunk = self._sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            with self._changed:
                self.lines.extend(line.decode(errors="replace").strip("\r") for line in complete)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0, after: int = 0) -> int:
        """The index of the first console line from ``after`` on containing ``text``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestRigError(f"{self.name} did not print {text!r}; last: {self.lines[-5:]}")
                self._changed.wait(left)

    def run(self, command: str, timeout: float = 30.0) -> None:
        """A shell command in the guest (a function of /init, say), waited for."""
        assert self._sock is not None
        mark = len(self.lines)
        self._sock.sendall(command.encode() + b"\n")
        self.wait_for("coord: done", timeout, after=mark)

    def ticks(self) -> int:
        """The writer's last tick (-1 before the first)."""
        with self._changed:
            found = [int(line.split()[1]) for line in self.lines if re.fullmatch(r"tick \d+", line)]
        return max(found, default=-1)

    def agent_connected(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "state='connected'" not in self.domain.XMLDesc(0).split("org.qemu.guest_agent.0")[-1][:40]:
            if time.monotonic() > deadline:
                raise GuestRigError(f"the agent of {self.name} never connected")
            time.sleep(0.1)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):   # already gone
            self.domain.destroy()
        if self._sock is not None:
            self._sock.close()


def let_others_through(path: Path) -> None:
    """Make ``path`` and its ancestors searchable by others (QEMU runs as the daemon's user;
    temporary directories are made 0700)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o001 == 0:
            os.chmod(directory, mode | 0o011)  # noqa: S103 - search only, no read or write


class Rig:
    """A daemon, its connection and the guests booted through it; ``stop`` ends them all."""

    def __init__(self) -> None:
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.image = build_image()
        self.daemon = LibvirtDaemon().start()
        try:
            self.connection = libvirt.open(self.daemon.uri)
        except Exception:
            self.daemon.stop()
            raise
        self.guests: list[Guest] = []

    def boot(self, name: str, disk_dir: Path, **options: bool) -> Guest:
        """A guest whose data disk is a new ext4 image in ``disk_dir`` (a dataset's mountpoint)."""
        let_others_through(disk_dir)
        disk = make_data_disk(disk_dir / f"{name}.img")
        guest = Guest.boot(self.connection, name, self.image, disk, self.daemon.directory, **options)
        self.guests.append(guest)
        if options.get("agent_channel", True) and options.get("start_agent", True):
            guest.agent_connected()
        return guest

    def stop(self) -> None:
        for guest in self.guests:
            guest.destroy()
        try:
            self.connection.close()
        finally:
            self.daemon.stop()
