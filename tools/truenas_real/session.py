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
   and ``/var/db/system`` are created empty on the host if missing and removed at the end), and a
   private copy of the host's ``/etc`` over ``/etc`` (middlewared's ``etc.generate`` rewrites
   ``/etc/passwd``, ``/etc/group`` and ``/etc/pam.d``: never the host's), with ``/run/utmp`` and
   ``/var/log/wtmp`` as a Debian boot makes them (a login's utmp entry needs them);
3. copies the factory database to ``/data/freenas-v1.db`` (as the middlewared package's
   ``debian/postinst`` does) and writes ``/data/manifest.json`` (``utils/__init__.py``
   ``sw_info`` reads ``version``, ``codename``, ``buildtime``);
4. starts zfs-fuse with pool ``tank`` in a file (``tools.rig.zfs``), datasets
   ``tank/vmware/nfs01`` and ``nfs02``; the simulator (``tools.rig.vcsim``) on
   ``127.0.0.1:443`` (the stock plugin has no port setting) with NFS datastores ``nfs01``/``nfs02``
   backed by those datasets' mountpoints, NAS address 127.0.0.1;
5. starts middlewared (:mod:`.daemon`, its own session: on exit it SIGKILLs its whole process
   group, ``main.py`` ``run``; the mocks of :mod:`.mocks` are installed by :mod:`.daemon`
   before any setup() runs), waits for ``core.ping`` over the unix socket, then provisions
   what a login over TCP (the web UI's, the NAS-served page's) needs (:meth:`Session.provision`);
   middlewared serves HTTP on 127.0.0.1:6000 (``main.py:1463``, ``:1472-1475``), where TrueNAS's
   nginx proxies ``/api`` and ``/_plugins`` (``etc_files/local/nginx/nginx.conf.mako:242-251``, ``:407-418``);
6. runs CMD with ``TRUENAS_REAL`` (a JSON file describing all of it; no secret in it),
   ``TRUENAS_REAL_VCSIM_PASSWORD`` and ``TRUENAS_REAL_SECRETS`` (a file the tests add each API key
   and token they make to) in its environment, then stops middlewared, the simulator and zfs-fuse
   by their pids, copies the logs to ``tests/artifacts/real_truenas/`` after checking that they
   hold none of those secrets (and empties any artifact the tests wrote that holds one), and
   exits with CMD's code.
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
PROVISION = """
import json
from truenas_api_client import Client
with Client() as c:
    c.call("etc.generate", "pam_middleware")
    group = c.call("group.query", [["group", "=", "builtin_administrators"]], {"get": True})
    members = [u["username"] for u in c.call("user.query", [["id", "in", group["users"]]])]
    print(json.dumps({"gid": group["gid"], "members": members}))
"""


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
        # Secrets the tests make (API keys, session tokens), one a line: no artifact may hold one.
        self.secrets_file = self.work / "secrets"
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
        # middlewared owns /etc on TrueNAS: etc.generate rewrites /etc/passwd, /etc/group, /etc/pam.d/...
        # (plugins/etc.py; api_key.create runs etc.generate pam_middleware, a password or API-key
        # login etc.generate user). Here it writes to a private copy of the host's /etc, never the host's.
        shutil.copytree("/etc", self.work / "etc", symlinks=True)
        self._mount("--bind", str(self.work / "etc"), "/etc")
        # What systemd-tmpfiles makes at every Debian boot (tmpfiles.d/systemd.conf): a login's utmp
        # entry (utils/account/utmp.py, pututline) needs the file to exist.
        for login_file in ("/run/utmp", "/var/log/wtmp"):
            Path(login_file).touch(mode=0o664)
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

    def provision(self) -> None:
        """What a TrueNAS boot leaves for a login over TCP (the web UI's, the page's).

        - ``/etc/pam.d/middleware*``: the real ``etc.generate pam_middleware``; without the service
          file ``utils/account/authenticator.py`` raises FileNotFoundError on any TCP login.
        - root in ``builtin_administrators`` in /etc/group, as TrueNAS's generated /etc/group has it
          (``etc_files/group.mako`` from the database): ``auth.authenticate_user``
          (``plugins/auth_/authenticate.py``) composes a password or API-key session's privilege from
          the NSS groups. The real ``etc.generate user`` cannot run here (the 'shadow' builtin group is
          provisioned by TrueNAS's image, not in the factory database), so the one line is written from
          the real ``group.query``/``user.query``, into the private /etc.
        """
        proc = subprocess.run(
            [str(self.python), "-c", PROVISION], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"provisioning the logins failed: {proc.stderr[-2000:]}")
        group = json.loads(proc.stdout.strip().splitlines()[-1])
        with open("/etc/group", "a") as etc_group:  # the private copy (prepare)
            etc_group.write(f"builtin_administrators:x:{group['gid']}:{','.join(group['members'])}\n")

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
        self.provision()
        self.timings["middlewared_start_seconds"] = round(time.monotonic() - started, 1)
        say(
            f"middlewared {self.manifest['version']} answers (pid {self.mw.pid if self.mw else ''}) after "
            f"{self.timings['middlewared_start_seconds']} s"
        )
        env = dict(
            os.environ,
            TRUENAS_REAL=str(self.describe(mounts)),
            TRUENAS_REAL_VCSIM_PASSWORD=self.password,
            TRUENAS_REAL_SECRETS=str(self.secrets_file),
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

    def _secrets(self) -> dict[str, str]:
        """What must be in no artifact: the simulator's password, and each key and token the tests made."""
        found = {"the simulator's password": self.password}
        if self.secrets_file.is_file():
            for line in self.secrets_file.read_text().splitlines():
                kind, _, value = line.partition("\t")
                if value:
                    found[f"{kind} #{len(found)}"] = value
        return found

    def _leaked(self, data: bytes, secrets: dict[str, str]) -> str | None:
        for what, value in secrets.items():
            if value.encode() in data:
                return what
        return None

    def _keep_logs(self) -> None:
        """middlewared's logs into tests/artifacts/real_truenas/, if no secret is in them."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        secrets = self._secrets()
        sources = [self.work / "middlewared.stdout", *sorted((self.work / "log").glob("*.log"))]
        for source in sources:
            if not source.is_file():
                continue
            data = source.read_bytes()
            if what := self._leaked(data, secrets):
                say(f"{source.name} contains {what}: not kept, and that is a bug")
                (ARTIFACTS / f"{source.name}.REFUSED").write_text(f"contained {what}; not kept\n")
                continue
            (ARTIFACTS / source.name).write_bytes(data)
        (ARTIFACTS / "timings.json").write_text(json.dumps(self.timings, indent=1))
        # What the tests wrote there too (observed.json, junit.xml, screenshots): no secret either.
        for written in sorted(ARTIFACTS.rglob("*")):
            if written.is_file() and (what := self._leaked(written.read_bytes(), secrets)):
                say(f"{written.relative_to(ARTIFACTS)} contains {what}: removed, and that is a bug")
                written.write_text(f"contained {what}; removed\n")


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
