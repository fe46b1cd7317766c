"""Inside private mount and network namespaces: zfs-fuse, the simulator, the real middlewared, a command.

Started by :mod:`tools.truenas_real.__main__` as
``unshare -m -n --propagation private <venv python> -m tools.truenas_real.session BUILD_DIR -- CMD...``
(root). In that namespace it:

1. brings loopback up (the network namespace has nothing else: every server is on 127.0.0.1
   and nothing here can reach another address);
2. mounts a fresh tmpfs on ``/run`` (so ``/var/run/middleware``, zfs-fuse's ``/var/run/zfs``
   socket and ``/run/lock/zfs`` are private: zfs-fuse is one daemon per socket, and other
   sessions on this machine use the host's), and binds a work directory's ``data/``, ``system/``
   and ``log/`` over ``/data``, ``/var/db/system`` and ``/var/log`` (the mount points ``/data``
   and ``/var/db/system`` are created empty on the host if missing and removed at the end);
3. copies the factory database to ``/data/freenas-v1.db`` (as the middlewared package's
   ``debian/postinst`` does) and writes ``/data/manifest.json`` (``utils/__init__.py``
   ``sw_info`` reads ``version``, ``codename``, ``buildtime``);
4. starts zfs-fuse with pool ``tank`` in a file (``tools.rig.zfs``), datasets
   ``tank/vmware/nfs01`` and ``nfs02``; the simulator (``tools.rig.vcsim``) on
   ``127.0.0.1:443`` (the stock plugin has no port setting) with NFS datastores ``nfs01``/``nfs02``
   backed by those datasets' mountpoints, NAS address 127.0.0.1;
5. starts middlewared (:mod:`.daemon`, its own session: on exit it SIGKILLs its whole process
   group, ``main.py`` ``run``; the mocks of :mod:`.mocks` are installed by :mod:`.daemon`
   before any setup() runs), waits for ``core.ping`` over the unix socket;
6. runs CMD with ``TRUENAS_REAL`` (a JSON file describing all of it; no secret in it) and
   ``TRUENAS_REAL_VCSIM_PASSWORD`` in its environment, then stops middlewared, the simulator
   and zfs-fuse by their pids, copies the logs to ``tests/artifacts/real_truenas/`` after
   checking that they hold no password, and exits with CMD's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.rig import vcsim, zfs

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "real_truenas"
# The setup() functions run (daemon.py): the database, the encryption secret (EncryptedText
# columns), unix-socket authentication (auth: core.on_connect), alerts (alert.oneshot_*), the
# stock vmware plugin (registers the "vmware" network activity) and this product's loader.
SETUP = ("datastore", "pwenc", "auth", "alert", "vmware", "vmware_coord")
POOL = "tank"
DATASTORES = ("nfs01", "nfs02")
SOCKET = Path("/var/run/middleware/middlewared.sock")


def say(message: str) -> None:
    print(f"truenas-real: {message}", file=sys.stderr, flush=True)


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class Session:
    def __init__(self, build_dir: Path) -> None:
        self.build = build_dir
        self.manifest = json.loads((build_dir / "manifest.json").read_text())
        self.python = build_dir / "venv" / "bin" / "python"
        self.work = Path(tempfile.mkdtemp(prefix="truenas-real-"))
        self.created_dirs: list[Path] = []
        self.mounted: list[Path] = []
        self.pool: zfs.ZfsPool | None = None
        self.sim: vcsim.Simulator | None = None
        self.mw: subprocess.Popen | None = None
        self.password = secrets.token_urlsafe(12)
        self.timings: dict[str, float] = {}

    # --- the namespace's file system ------------------------------------------------------

    def _mount(self, *args: str) -> None:
        _sh("mount", *args)
        self.mounted.append(Path(args[-1]))

    def _bind(self, source: Path, target: Path) -> None:
        missing = [p for p in (target, *target.parents) if not p.exists()]
        for directory in reversed(missing):  # outermost first; removed innermost first at the end
            directory.mkdir()
            self.created_dirs.append(directory)
        source.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(source), str(target))

    def prepare(self) -> None:
        _sh("ip", "link", "set", "lo", "up")
        self._mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
        for directory in ("/run/lock", "/run/lock/zfs", "/run/zfs", "/run/middleware"):
            os.makedirs(directory, exist_ok=True)
        self._bind(self.work / "data", Path("/data"))
        self._bind(self.work / "system", Path("/var/db/system"))
        self._bind(self.work / "log", Path("/var/log"))
        shutil.copyfile(self.build / "factory-v1.db", "/data/freenas-v1.db")
        version = self.manifest["version"]
        Path("/data/manifest.json").write_text(
            json.dumps(
                {
                    "version": version,
                    "codename": self.manifest.get("codename", "Goldeye"),
                    "buildtime": int(time.time()),
                }
            )
        )

    # --- servers ----------------------------------------------------------------------------

    def start_zfs(self) -> dict[str, str]:
        self.pool = zfs.start_pool(self.work / "zfs", name=POOL, size="512M")
        mounts = {}
        for name in DATASTORES:
            dataset = self.pool.create_dataset(f"vmware/{name}")
            mounts[name] = str(self.pool.dataset_mountpoint(dataset))
        return mounts

    def start_vcsim(self, mounts: dict[str, str]) -> None:
        flags = ["-l", "127.0.0.1:443", "-vm", "0"]
        for name, path in mounts.items():
            flags.append(f"-nfs={name}={path},host=127.0.0.1,path={path}")
        self.sim = vcsim.start(*flags, username="vcuser", password=self.password)

    def start_middlewared(self) -> None:
        log = open(self.work / "middlewared.stdout", "wb")  # noqa: SIM115 - lives as long as the daemon
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRUENAS_REAL")}
        env.pop("PYTHONPATH", None)  # the plugin's site dir is added by its loader, as on TrueNAS
        if os.environ.get("TRUENAS_REAL_SITE_FIRST"):
            # Diagnostic only (not how TrueNAS runs it): the project's own dependencies before
            # the framework's, to see past a dependency that the real layout shadows.
            env["PYTHONPATH"] = str(self.build / "site")
        self.mw = subprocess.Popen(
            [str(self.python), "-m", "tools.truenas_real.daemon", "--setup", ",".join(SETUP)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.mw.poll() is not None:
                raise RuntimeError(
                    f"middlewared exited with {self.mw.returncode}; see {self.work}/middlewared.stdout"
                )
            if SOCKET.exists() and self._ping():
                return
            time.sleep(0.5)
        raise RuntimeError("middlewared did not answer core.ping within 300 s")

    def _ping(self) -> bool:
        proc = subprocess.run(
            [
                str(self.python),
                "-c",
                "from truenas_api_client import Client\nwith Client() as c: print(c.call('core.ping'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.stdout.strip() == "pong"

    # --- the command --------------------------------------------------------------------------

    def describe(self, mounts: dict[str, str]) -> Path:
        assert self.sim is not None and self.pool is not None and self.mw is not None
        info: dict[str, Any] = {
            "build": str(self.build),
            "work": str(self.work),
            "version": self.manifest["version"],
            "manifest": str(self.build / "manifest.json"),
            "site": str(self.build / "site"),
            "middlewared_pid": self.mw.pid,
            "middlewared_log": "/var/log/middlewared.log",
            "vcsim": {
                "url": self.sim.url,
                "host": self.sim.host,
                "port": self.sim.port,
                "sha256": self.sim.sha256,
                "username": self.sim.username,
                "pid": self.sim.pid,
            },
            "pool": POOL,
            "datastores": {
                name: {"dataset": f"{POOL}/vmware/{name}", "mountpoint": path}
                for name, path in mounts.items()
            },
            "timings": self.timings,
        }
        path = self.work / "session.json"
        path.write_text(json.dumps(info, indent=1))
        return path

    def run(self, command: list[str]) -> int:
        started = time.monotonic()
        self.prepare()
        mounts = self.start_zfs()
        self.start_vcsim(mounts)
        self.timings["rig_seconds"] = round(time.monotonic() - started, 1)
        say(f"zfs-fuse pool {POOL} and the simulator ({self.sim.url if self.sim else ''}) are up")
        started = time.monotonic()
        self.start_middlewared()
        self.timings["middlewared_start_seconds"] = round(time.monotonic() - started, 1)
        say(
            f"middlewared {self.manifest['version']} answers (pid {self.mw.pid if self.mw else ''}) after "
            f"{self.timings['middlewared_start_seconds']} s"
        )
        env = dict(
            os.environ, TRUENAS_REAL=str(self.describe(mounts)), TRUENAS_REAL_VCSIM_PASSWORD=self.password
        )
        env["PYTHONPATH"] = os.pathsep.join([str(self.build / "site"), str(ROOT)])
        started = time.monotonic()
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        self.timings["command_seconds"] = round(time.monotonic() - started, 1)
        return code

    # --- the end ----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.mw is not None and self.mw.poll() is None:
            os.kill(self.mw.pid, signal.SIGTERM)
            try:
                self.mw.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.mw.pid, signal.SIGKILL)  # its own session: only its processes
                self.mw.wait()
        if self.mw is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.mw.pid, signal.SIGKILL)  # workers and the zettarepl child, if left
        if self.sim is not None:
            self.sim.stop()
        if self.pool is not None:
            self.pool.destroy()
        self._keep_logs()
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
        shutil.rmtree(self.work, ignore_errors=True)

    def _keep_logs(self) -> None:
        """middlewared's logs into tests/artifacts/real_truenas/, if no password is in them."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        sources = [self.work / "middlewared.stdout", *sorted((self.work / "log").glob("*.log"))]
        for source in sources:
            if not source.is_file():
                continue
            text = source.read_text(errors="replace")
            if self.password in text:
                say(f"{source.name} contains the simulator's password: not kept, and that is a bug")
                (ARTIFACTS / f"{source.name}.REFUSED").write_text("contained a password; not kept\n")
                continue
            (ARTIFACTS / source.name).write_text(text)
        (ARTIFACTS / "timings.json").write_text(json.dumps(self.timings, indent=1))
        # What the tests wrote there too (observed.json, junit.xml): no password either.
        for written in ARTIFACTS.iterdir():
            if written.is_file() and self.password in written.read_text(errors="replace"):
                say(f"{written.name} contains the simulator's password: removed, and that is a bug")
                written.write_text("contained a password; removed\n")


@contextlib.contextmanager
def session(build_dir: Path) -> Iterator[Session]:
    s = Session(build_dir)
    try:
        yield s
    finally:
        s.stop()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tools.truenas_real.session BUILD_DIR -- COMMAND...", file=sys.stderr)
        return 2
    if os.getuid() != 0:
        print("truenas-real: needs root (mount and network namespaces, zfs-fuse)", file=sys.stderr)
        return 2
    # SIGTERM from outside: end through the finally below (servers stopped by pid).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with session(Path(args[0])) as s:
        return s.run(args[2:])


if __name__ == "__main__":
    sys.exit(main())
