"""Fault injection (issue 11, "Show it"): the real ``vmware-coord`` against the simulator and
zfs-fuse, broken at the moments that matter, and what must hold afterwards.

- SIGKILL at seeded random points of ``snapshot`` (begin, the ZFS snapshot, end): one
  ``reconcile`` then leaves no marked VMware snapshot, no VM off, and every ZFS snapshot.
- vCenter killed (a TCP proxy in front of the simulator, tools/rig/proxy.py) while a
  create and while a remove is in flight: an honest report and snapshot, exit 1, and one
  ``reconcile`` once vCenter is back cleans up.
- The state directory read-only or full (tmpfs mounts; the suite runs in a private mount
  namespace, tools/rig/isolation.py), the journal or the policy store corrupted.
- A scheduler whose ``zfs snapshot`` failed between ``hook pre`` and ``hook post``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_env import PASSWORD_ENV, CliEnv
from engine_env import NAS, EngineEnv
from pyVmomi import vim
from truenas_vmware_coord.zfs.snapshot import PROP_RUN, PROP_SUMMARY, PROP_VMSYNCED

from tools.rig import inventory, isolation, proxy
from tools.rig.cli_config import write_cli_config

SEED = 1111   # fixed: a failure names its trial, and the same kill points come again
TRIALS = 24
DATABASES = {"name": "db", "priority": 1, "ladder": ["power_off", "crash"],
             "options": {"shutdown_timeout_seconds": 20}, "match": {"name_glob": "*-db"}}
# Per-VM server delays (ms) that stretch a run to ~2 s, so kill points land in every phase.
DELAYS = {
    "app1": {"vcsim.delay.CreateSnapshotEx_Task": "400", "vcsim.delay.RemoveSnapshot_Task": "300"},
    "app2": {"vcsim.delay.CreateSnapshot_Task": "600", "vcsim.delay.RemoveSnapshot_Task": "500"},
    "db": {},
}
LONGEST_DELAY_S = 0.6
SNAPSHOT_CALLS = ("CreateSnapshotEx_Task", "CreateSnapshot_Task")
POWER_CALLS = ("ShutdownGuest", "PowerOffVM_Task", "SuspendVM_Task", "PowerOnVM_Task")


# --- helpers -----------------------------------------------------------------------------------


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 30, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
    return value


def _query(journal: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Read the journal as it is on disk (read-only, so the test never repairs or creates it)."""
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []   # not created yet
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()


def _no_traceback(*stderrs: str, where: str = "") -> None:
    for text in stderrs:
        assert "Traceback" not in text, f"{where}\n{text}"


def _env_vms(env: EngineEnv) -> list[vim.VirtualMachine]:
    return [vm for vm in inventory.vms(env.si) if vm.name.startswith(f"{env.datastore}-")]


def _powered_off(env: EngineEnv) -> list[str]:
    return [vm.name for vm in _env_vms(env) if vm.runtime.powerState != "poweredOn"]


def _calls(stats: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    return {n: stats[n] for n in names if stats.get(n)}


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):   # it may have exited just before
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout:g} s; stderr so far:\n{err}") from None


def _cli_behind(env: EngineEnv, directory: Path, port: int | None = None,
                engine: dict[str, int] | None = None) -> CliEnv:
    """A CLI whose configuration points at ``port`` (a proxy) instead of the simulator."""
    state = directory / "state"
    config = write_cli_config(directory / "config.toml", env.sim, state, PASSWORD_ENV,
                              [(env.datastore, env.dataset)], [NAS], port=port, engine=engine)
    return CliEnv(env, config, state)


def _create_policy(cli: CliEnv) -> None:
    proc = cli.run("policy", "create", json.dumps(DATABASES))
    assert proc.returncode == 0, proc.stderr


def _scene(sim, zfs_pool, module_si, directory: Path, *names: str) -> EngineEnv:
    env = EngineEnv.create(sim, zfs_pool, module_si, directory)
    for name in names:
        env.vm(name)
    return env


# --- a. SIGKILL at random points ---------------------------------------------------------------


@dataclasses.dataclass
class KillRig:
    env: EngineEnv
    cli: CliEnv
    slow_zfs: Path   # a directory whose ``zfs`` stretches ``zfs snapshot`` (see the fixture)


@pytest.fixture(scope="module")
def kill_rig(sim, zfs_pool, module_si, tmp_path_factory) -> KillRig:
    directory = tmp_path_factory.mktemp("sigkill")
    env = _scene(sim, zfs_pool, module_si, directory)
    for name, delays in DELAYS.items():
        vm = env.vm(name)
        if delays:
            inventory.set_extra_config(vm, delays)
    cli = CliEnv.create(env, directory)
    _create_policy(cli)
    # The real zfs, held 0.2 s before and after its work: zfs-fuse takes a snapshot in ~10 ms,
    # too short a window to ever be hit, where a busy pool takes much longer. Both sides
    # matter: killed before the snapshot exists, and after it exists but before end began.
    real = shutil.which("zfs")
    assert real, "zfs is not installed"
    slow = directory / "slow-zfs"
    slow.mkdir()
    (slow / "zfs").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != snapshot ]; then exec {real} "$@"; fi\n'
        f'sleep 0.2; {real} "$@"; rc=$?; sleep 0.2; exit $rc\n')
    (slow / "zfs").chmod(0o755)
    return KillRig(env, cli, slow)


def _phase(cli: CliEnv, since: float, zfs_taken: bool) -> tuple[str, str]:
    """Where the killed run was, read from its journal: (phase, run id)."""
    runs = _query(cli.journal_path(), "SELECT run_id, context IS NOT NULL, snapshot, state FROM runs "
                                      "WHERE started_at >= ?", (since,))
    if not runs:
        return "startup (no run recorded yet)", ""
    run_id, begun_fully, recorded, state = runs[0]
    actions = _query(cli.journal_path(), "SELECT state, count(*) FROM actions WHERE run_id = ? "
                                         "GROUP BY state", (run_id,))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(actions)) or "no action"
    if state == "ended":
        return f"after end ({counts})", run_id
    if recorded:
        return f"end ({counts})", run_id
    if begun_fully:
        taken = "taken" if zfs_taken else "not taken yet"
        return f"ZFS snapshot ({taken}; {counts})", run_id
    return f"begin ({counts})", run_id


def _timeline(rig: KillRig, name: str) -> dict[str, float]:
    """One uninterrupted run, its phases timed from the outside (seconds after start)."""
    since = time.time()
    proc = rig.cli.start("snapshot", rig.env.dataset, "--name", name, path_prefix=rig.slow_zfs)
    started = time.monotonic()
    marks: dict[str, float] = {}
    while proc.poll() is None:
        rows = _query(rig.cli.journal_path(), "SELECT context IS NOT NULL, snapshot FROM runs "
                                              "WHERE started_at >= ?", (since,))
        now = time.monotonic() - started
        if rows:
            marks.setdefault("begin", now)
            if rows[0][0]:
                marks.setdefault("zfs", now)
            if rows[0][1]:
                marks.setdefault("end", now)
        time.sleep(0.005)
    marks["exit"] = time.monotonic() - started
    out, err = proc.communicate()
    assert proc.returncode == 0, f"the uninterrupted run failed ({proc.returncode}):\n{err}"
    _no_traceback(err)
    assert rig.env.product_snapshots() == [] and _powered_off(rig.env) == []
    return marks


def test_sigkill_at_random_points_then_one_reconcile_leaves_nothing(kill_rig: KillRig) -> None:
    env, cli = kill_rig.env, kill_rig.cli
    timeline = _timeline(kill_rig, "uninterrupted")
    rng = random.Random(SEED)
    # Stratified over the whole run, so every phase gets kill points whatever the seed.
    width = timeline["exit"] / TRIALS
    points = [(i + rng.random()) * width for i in range(TRIALS)]
    rng.shuffle(points)
    shown = ", ".join(f"{k} {v:.2f}s" for k, v in timeline.items())
    print(f"seed {SEED}; uninterrupted run: {shown}; kill points: {[round(p, 3) for p in points]}")
    hits: list[str] = []
    for trial, point in enumerate(points):
        name = f"kill{trial}"
        since = time.time()
        proc = cli.start("snapshot", env.dataset, "--name", name, path_prefix=kill_rig.slow_zfs)
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, started + point - time.monotonic()))
        _kill_group(proc)
        killed_stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        snapshot = f"{env.dataset}@{name}"
        phase, run_id = _phase(cli, since, snapshot in env.pool.snapshots(env.dataset))
        where = (f"seed {SEED}, trial {trial}: SIGKILL {point:.3f} s after start, in {phase} "
                 f"(uninterrupted run: {shown})")
        hits.append(f"{point:.3f}s {phase}")
        # Calls already on the wire still complete on the server (a late create lands):
        # reconcile runs once they have, as cron's would.
        time.sleep(LONGEST_DELAY_S + 0.3)
        after_kill = set(env.pool.snapshots(env.dataset))

        rec = cli.run("--json", "reconcile")
        _no_traceback(killed_stderr, rec.stderr, where=where)
        result = json.loads(rec.stdout) if rec.stdout.strip() else {}
        if rec.returncode != 0:
            # Only a create whose intent was journaled but never sent may stay open (in doubt
            # for in_doubt_window_s): nothing exists on VMware to remove.
            open_rows = _query(cli.journal_path(), "SELECT kind, state, snapshot_moref FROM actions "
                                                   "WHERE state IN ('intent', 'done', 'undo_failed')")
            assert rec.returncode == 4 and not result.get("endpoint_errors") and open_rows and all(
                r == ("snapshot", "intent", None) for r in open_rows), \
                f"{where}: reconcile exited {rec.returncode}: {rec.stdout}{rec.stderr}"
        assert env.product_snapshots() == [], f"{where}: marked VMware snapshots left: {result}"
        assert _powered_off(env) == [], f"{where}: VMs left off: {result}"
        lost = after_kill - set(env.pool.snapshots(env.dataset))
        assert not lost, f"{where}: ZFS snapshots lost: {sorted(lost)}"
        if snapshot in after_kill and run_id:
            labels = [env.pool.get(snapshot, p) for p in (PROP_RUN, PROP_VMSYNCED)]
            assert labels[0] == run_id and labels[1] in ("Y", "N"), f"{where}: {snapshot} labelled {labels}"
    print("\n".join(f"seed {SEED}, trial {i}: {h}" for i, h in enumerate(hits)))
    phases = {h.split()[1] for h in hits}
    assert {"begin", "ZFS", "end"} <= phases, f"seed {SEED}: kill points missed a phase: {hits}"


# --- b. vCenter killed mid-begin and mid-end ----------------------------------------------------


@pytest.fixture
def proxies() -> Iterator[list[proxy.Proxy]]:
    """Every proxy a test starts, stopped by its pid at the end whatever happened."""
    started: list[proxy.Proxy] = []
    yield started
    for p in started:
        p.stop()


@dataclasses.dataclass
class InFlight:
    """A snapshot run behind a proxy, caught with one slow VM's call on the wire."""

    env: EngineEnv
    cli: CliEnv
    front: proxy.Proxy
    proc: subprocess.Popen
    slow_name: str
    name: str


def _snapshot_in_flight(sim, zfs_pool, module_si, directory: Path, proxies: list[proxy.Proxy], moment: str,
                        name: str, engine: dict[str, int] | None = None) -> InFlight:
    """Start ``vmware-coord snapshot`` behind a proxy; return once the slow VM's create
    (mid-begin) or remove (mid-end) is held by the server."""
    env = _scene(sim, zfs_pool, module_si, directory, "app", "db")
    slow = env.vm("slow")
    slow_name = slow.name   # read now: a property read waits while the VM's delayed call holds it
    method = "CreateSnapshotEx_Task" if moment == "mid-begin" else "RemoveSnapshot_Task"
    inventory.set_extra_config(slow, {f"vcsim.delay.{method}": "3000"})
    front = proxy.start((sim.host, sim.port))
    proxies.append(front)
    cli = _cli_behind(env, directory, port=front.port, engine=engine)
    _create_policy(cli)
    proc = cli.start("--json", "snapshot", env.dataset, "--name", name)
    if moment == "mid-begin":
        _wait_for(lambda: _query(cli.journal_path(), "SELECT 1 FROM actions WHERE vm_name = ?",
                                 (slow_name,)), "the slow VM's intent")
    else:
        _wait_for(lambda: _query(cli.journal_path(), "SELECT 1 FROM runs WHERE snapshot IS NOT NULL"),
                  "the end phase")
    time.sleep(0.5)   # the slow call is on the wire, held by the server
    return InFlight(env, cli, front, proc, slow_name, name)


def _reconcile_leaves_nothing(run: InFlight) -> None:
    """With vCenter answering again, reconcile removes every snapshot and starts every VM."""
    rec = run.cli.run("--json", "reconcile")
    _no_traceback(rec.stderr)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert run.env.product_snapshots() == [], rec.stdout
    assert _powered_off(run.env) == [], rec.stdout
    assert json.loads(rec.stdout)["still_open"] == 0


@pytest.mark.parametrize("moment", ["mid-begin", "mid-end"])
def test_vcenter_killed_in_flight(sim, zfs_pool, module_si, tmp_path, proxies, moment: str) -> None:
    run = _snapshot_in_flight(sim, zfs_pool, module_si, tmp_path, proxies, moment, moment.replace("-", ""))
    env, front, proc, slow_name, name = run.env, run.front, run.proc, run.slow_name, run.name
    front.kill()
    killed_at = time.monotonic()
    out, err = _finish(proc, timeout=180)
    took = time.monotonic() - killed_at
    _no_traceback(err)
    assert out.strip(), f"no report printed (exit {proc.returncode}):\n{err}"
    report = json.loads(out)
    snapshot = f"{env.dataset}@{name}"
    assert proc.returncode == 1, (f"{moment}: exit {proc.returncode} {took:.1f} s after vCenter died; "
                                  f"leftovers {report.get('leftovers')}, vmsynced {report['vmsynced']}"
                                  f":\n{err}")
    assert snapshot in env.pool.snapshots(env.dataset)
    vmsynced = env.pool.get(snapshot, PROP_VMSYNCED)
    outcome = {v["name"]: v for v in report["vms"]}
    if moment == "mid-begin":
        # The slow VM got no snapshot in time: the ZFS snapshot is not VM-consistent.
        assert vmsynced == "N" and report["vmsynced"] is False
        assert outcome[slow_name]["consistency"] == "crash"
        assert report["in_doubt"] == [slow_name], report["in_doubt"]   # it may still land
    else:
        # Every VM was prepared before the ZFS snapshot: it is consistent, only cleanup failed.
        assert vmsynced == "Y" and report["vmsynced"] is True
        assert any(slow_name in left for left in report["leftovers"]), report["leftovers"]

    # The server finishes what it was given; then vCenter comes back on the same port.
    if moment == "mid-begin":
        _wait_for(lambda: any(s.startswith(f"{slow_name}:") for s in env.product_snapshots()),
                  "the late snapshot", timeout=15, poll=0.2)
    else:
        time.sleep(3)
    proxies.append(front.restart())
    _reconcile_leaves_nothing(run)


# A hung vCenter (or a network that drops packets) answers nothing: every call waits for its
# socket timeout (60 s here, the default), one after another. The deadlines bound the run.
HUNG_DEADLINE_S = 10


@pytest.mark.parametrize("moment", ["mid-begin", "mid-end"])
def test_vcenter_hung_in_flight(sim, zfs_pool, module_si, tmp_path, proxies, moment: str) -> None:
    started = time.monotonic()
    run = _snapshot_in_flight(sim, zfs_pool, module_si, tmp_path, proxies, moment,
                              f"hung{moment.replace('-', '')}", engine={
                                  "begin_deadline_seconds": HUNG_DEADLINE_S,
                                  "vm_deadline_seconds": HUNG_DEADLINE_S,
                                  "end_deadline_seconds": HUNG_DEADLINE_S})
    env, cli, front, proc, slow_name, name = (run.env, run.cli, run.front, run.proc, run.slow_name, run.name)
    front.freeze()
    try:
        out, err = _finish(proc, timeout=240)
        took = time.monotonic() - started
    finally:
        front.thaw()
    print(f"{moment}: exit {proc.returncode} {took:.1f} s after the run started, the vCenter hung")
    _no_traceback(err)
    report = json.loads(out)
    # The begin and the end deadline, a grace for closing each session, the settling of the
    # create in doubt (its session cannot even be opened): well under one socket timeout each.
    assert took < 3 * HUNG_DEADLINE_S + 25, f"{moment}: the run took {took:.0f} s against a hung vCenter"
    assert proc.returncode == 1, f"{moment}: exit {proc.returncode}:\n{err}"
    snapshot = f"{env.dataset}@{name}"
    assert snapshot in env.pool.snapshots(env.dataset)
    outcome = {v["name"]: v for v in report["vms"]}
    if moment == "mid-begin":
        assert env.pool.get(snapshot, PROP_VMSYNCED) == "N" and report["vmsynced"] is False
        assert outcome[slow_name]["consistency"] == "crash"
    else:
        assert env.pool.get(snapshot, PROP_VMSYNCED) == "Y" and report["vmsynced"] is True
    assert report["leftovers"] or report["in_doubt"], report

    _wait_for(lambda: _query(cli.journal_path(), "SELECT 1 FROM runs WHERE ended_at IS NOT NULL"),
              "the run's end in the journal")
    time.sleep(3)   # the server finishes what it was given before the hang
    _reconcile_leaves_nothing(run)


# --- c. the state directory read-only, full, corrupted ------------------------------------------


@pytest.fixture
def mounts() -> Iterator[Callable[[Path, str], Path]]:
    """tmpfs mounts for a test, unmounted in its finalizer (chmod stops no root process)."""
    assert isolation.isolated(), ("run through 'python -m tools.rig.isolation' (./run test): these "
                                  "tests mount file systems, in a private mount namespace only")
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       check=True, capture_output=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


def _fill(directory: Path) -> None:
    """Write until the file system says it is full (unbuffered: every ENOSPC is seen here)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * chunk):
                    pass
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:   # the test's own proof that it is full
        (directory / "probe").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC


def _assert_untouched(env: EngineEnv, stats: dict[str, int]) -> None:
    assert _calls(stats, SNAPSHOT_CALLS + POWER_CALLS) == {}, stats
    time.sleep(0.3)   # nothing may land late either
    assert env.product_snapshots() == []
    assert {vm.name: inventory.snapshot_names(vm) for vm in _env_vms(env)} == \
        {vm.name: [] for vm in _env_vms(env)}
    assert _powered_off(env) == []


def _uncoordinated(env: EngineEnv, cli: CliEnv, name: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``snapshot`` whose state is unusable: exit 1, the ZFS snapshot labelled N, no VM touched."""
    env.sim.stats(reset=True)
    proc = cli.run("--json", "snapshot", env.dataset, "--name", name)
    stats = env.sim.stats()
    _no_traceback(proc.stderr)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["coordinated"] is False and document["vmsynced"] is False
    snapshot = f"{env.dataset}@{name}"
    assert snapshot in env.pool.snapshots(env.dataset)
    assert env.pool.get(snapshot, PROP_VMSYNCED) == "N"
    assert env.pool.get(snapshot, PROP_SUMMARY).startswith("not coordinated:")
    assert "no VM was touched" in proc.stderr and "vmware-coord doctor" in proc.stderr
    _assert_untouched(env, stats)
    return proc, document


@pytest.mark.parametrize("history", ["fresh", "used"])
@pytest.mark.parametrize("breakage", ["read-only", "full"])
def test_unusable_state_directory_gives_an_uncoordinated_snapshot(sim, zfs_pool, module_si, tmp_path, mounts,
                                                                 breakage: str, history: str) -> None:
    env = _scene(sim, zfs_pool, module_si, tmp_path, "app", "db")
    cli = CliEnv.create(env, tmp_path)
    mounts(cli.state_dir, "2m")
    if history == "used":   # a policy and a journal with a run in it, then the disk breaks
        _create_policy(cli)
        first = cli.run("snapshot", env.dataset, "--name", "before")
        assert first.returncode == 0, first.stderr
    if breakage == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(cli.state_dir)], check=True, capture_output=True)
        with pytest.raises(OSError):   # the test's own proof that the mount is read-only
            (cli.state_dir / "probe").write_text("x")
    else:
        _fill(cli.state_dir)

    proc, _ = _uncoordinated(env, cli, "broken")
    assert str(cli.state_dir) in proc.stderr, proc.stderr
    if breakage == "read-only":
        assert "writable" in proc.stderr, proc.stderr
    else:
        assert "full" in proc.stderr and "free some space" in proc.stderr, proc.stderr


def _corrupt(path: Path, rng: random.Random, keep_header: bool) -> bytes:
    """Garbage where a database was: all of it, or everything after SQLite's 100-byte header
    (a database that opens, then fails its integrity check)."""
    size = max(path.stat().st_size if path.exists() else 0, 16384)
    head = path.read_bytes()[:100] if keep_header else b""
    data = head + rng.randbytes(size - len(head))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("garbage", ["random bytes", "header kept"])
def test_corrupted_journal_is_moved_aside_and_the_run_coordinated(sim, zfs_pool, module_si, tmp_path,
                                                                  garbage: str) -> None:
    env = _scene(sim, zfs_pool, module_si, tmp_path, "app", "db")
    cli = CliEnv.create(env, tmp_path)
    _create_policy(cli)
    first = cli.run("snapshot", env.dataset, "--name", "before")
    assert first.returncode == 0, first.stderr
    data = _corrupt(cli.journal_path(), random.Random(SEED), keep_header=garbage == "header kept")

    proc = cli.run("--json", "snapshot", env.dataset, "--name", "after")
    _no_traceback(proc.stderr)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["vmsynced"] is True, proc.stdout + proc.stderr
    aside = sorted(p for p in cli.state_dir.glob("journal.sqlite.corrupt-*")
                   if not p.name.endswith(("-wal", "-shm")))
    assert len(aside) == 1 and aside[0].read_bytes() == data, aside
    assert "warning:" in proc.stderr and str(aside[0]) in proc.stderr, proc.stderr
    assert env.pool.get(f"{env.dataset}@after", PROP_VMSYNCED) == "Y"
    assert env.product_snapshots() == [] and _powered_off(env) == []
    # The new journal is a working one: the run is in it, and the next run says nothing.
    runs = cli.run("runs")
    assert runs.returncode == 0 and f"{env.dataset}@after" in runs.stdout, runs.stdout + runs.stderr
    again = cli.run("snapshot", env.dataset, "--name", "again")
    assert again.returncode == 0 and "moved aside" not in again.stderr, again.stderr

    doctor = cli.run("--json", "doctor")
    _no_traceback(doctor.stderr)
    assert doctor.returncode == 4, doctor.stdout + doctor.stderr
    findings = {f["what"]: f for f in json.loads(doctor.stdout)}
    assert findings["moved-aside journals"]["ok"] is False
    assert aside[0].name in findings["moved-aside journals"]["detail"]
    assert findings["moved-aside journals"]["fix"]


def test_corrupted_policy_store_gives_an_uncoordinated_snapshot_and_is_left_alone(
        sim, zfs_pool, module_si, tmp_path) -> None:
    env = _scene(sim, zfs_pool, module_si, tmp_path, "app", "db")
    cli = CliEnv.create(env, tmp_path)
    _create_policy(cli)
    data = _corrupt(cli.state_dir / "policies.sqlite", random.Random(SEED), keep_header=False)

    proc, document = _uncoordinated(env, cli, "nopolicies")
    for text in (proc.stderr, document["reason"]):
        assert "policy store" in text and "policies.sqlite" in text, text
        assert "restore it from a backup" in text, text
    listed = cli.run("policy", "list")
    _no_traceback(listed.stderr)
    assert listed.returncode == 4, listed.stdout + listed.stderr
    assert "policy store" in listed.stderr and "restore it from a backup" in listed.stderr, listed.stderr
    assert (cli.state_dir / "policies.sqlite").read_bytes() == data


# --- d. a failed zfs snapshot between hook pre and hook post ------------------------------------


def test_post_hook_after_a_failed_zfs_snapshot_undoes_everything(sim, zfs_pool, module_si, tmp_path) -> None:
    env = _scene(sim, zfs_pool, module_si, tmp_path, "app", "db")
    cli = CliEnv.create(env, tmp_path)
    _create_policy(cli)
    db = inventory.vm_named(module_si, f"{env.datastore}-db")
    sanoid = {"SANOID_TARGETS": env.dataset, "SANOID_SNAPNAMES": "autosnap_2026-12-02_00:00:00_hourly"}

    pre = cli.run("hook", "pre", "--timeout", "30", SANOID_SCRIPT="pre", **sanoid)
    _no_traceback(pre.stderr)
    assert pre.returncode == 0, pre.stderr
    assert len(env.product_snapshots()) == 1 and db.runtime.powerState == "poweredOff"
    # sanoid's zfs snapshot failed: there is no snapshot, and sanoid still runs post.
    post = cli.run("hook", "post", SANOID_SCRIPT="post", SANOID_PRE_FAILURE="0", **sanoid)
    _no_traceback(post.stderr)
    assert post.returncode == 3, post.stdout + post.stderr
    assert "does not exist" in post.stderr and sanoid["SANOID_SNAPNAMES"] in post.stderr, post.stderr
    assert env.product_snapshots() == []
    assert db.runtime.powerState == "poweredOn" and _powered_off(env) == []
    assert not [s for s in env.pool.snapshots(env.dataset) if "autosnap" in s]

    code, result = cli.json("reconcile")
    assert code == 0 and result["still_open"] == 0 and not result["endpoint_errors"], result
    assert {k: v for k, v in result.items() if isinstance(v, list) and v} == {}, result   # nothing done
