"""sanoid (the real 2.1.0) and zrepl (its hook executor, emulated from its source) drive the hooks.

What a user relies on, checked after every scheduler run: each ZFS snapshot taken carries a
truthful ``freenas:vmsynced`` (Y only when every VM reached its requirement, N otherwise,
never missing), ``vmware-coord report DATASET@SNAP`` finds it and agrees with it, and no
VMware snapshot with the product's marker and no powered-off VM remains (after the run, or
after one ``vmware-coord reconcile`` where the scheduler killed a hook).

The schedulers are configured with exactly ``examples/sanoid/sanoid.conf`` and
``examples/zrepl/zrepl.yml`` (tools/rig/sanoid.py and zrepl.py say what they substitute)
and call the ``vmware-coord-hook`` console script, as the README tells users to.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_env import PASSWORD_ENV, CliEnv
from engine_env import NAS, EngineEnv
from pyVmomi import vim
from truenas_vmware_coord.domain.selection import SNAPSHOT_NAME_PREFIX
from truenas_vmware_coord.zfs.snapshot import PROP_RUN, PROP_VMSYNCED

from tools.rig import inventory, sanoid, zrepl
from tools.rig.cli_config import write_cli_config

HOOK = str(Path(sys.executable).with_name("vmware-coord-hook"))
DATABASES = {"name": "databases", "priority": 1, "ladder": ["power_off", "crash"],
             "options": {"shutdown_timeout_seconds": 20}, "match": {"name_glob": "*-db"}}
# The simulator holds the reply to these calls back for 8 s (longer than any hook's budget).
SLOW_CREATE = {"vcsim.delay.CreateSnapshotEx_Task": "8000", "vcsim.delay.CreateSnapshot_Task": "8000"}
# sanoid's runscript warns "WARN: pre_snapshot_script failed, <wait status>" for an exit != 0.
_SCRIPT_FAILED = re.compile(r"WARN: (pre|post)_snapshot_script failed, (-?\d+)")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


@dataclasses.dataclass
class Site:
    """A dataset (and, if a test adds one, a child dataset) backing NFS datastores with VMs,
    a vmware-coord configuration for them, and the environment a scheduler runs in."""

    env: EngineEnv
    cli: CliEnv
    tmp: Path
    datastores: dict[str, str]                       # dataset -> its datastore
    vms: list[vim.VirtualMachine] = dataclasses.field(default_factory=list)
    slowed: list[vim.VirtualMachine] = dataclasses.field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.env.dataset

    def vm(self, name: str, dataset: str | None = None, **kwargs: object) -> vim.VirtualMachine:
        datastore = self.datastores[dataset or self.dataset]
        vm = inventory.create_vm(self.env.si, f"{datastore}-{name}", datastore, **kwargs)
        self.vms.append(vm)
        return vm

    def slow(self, name: str) -> vim.VirtualMachine:
        """A VM whose snapshot creates the simulator answers only after 8 s."""
        vm = self.vm(name)
        inventory.set_extra_config(vm, SLOW_CREATE)
        self.slowed.append(vm)
        return vm

    def settle_simulator(self) -> None:
        """The simulator serves a held-back create under the VM's lock, and every inventory
        read waits for that lock: let late creates land before the next test reads. The
        reconfiguration itself waits for the lock."""
        for vm in self.slowed:
            inventory.set_extra_config(vm, dict.fromkeys(SLOW_CREATE, ""))

    def add_child(self) -> str:
        """A child dataset with a datastore of its own (named after its mountpoint's last part)."""
        leaf = self.dataset.rsplit("/", 1)[1]
        child = self.env.pool.create_dataset(f"{self.dataset.split('/', 1)[1]}/{leaf}c")
        mountpoint = self.env.pool.dataset_mountpoint(child)
        self.datastores[child] = inventory.add_nfs_datastore(self.env.si, str(mountpoint), NAS)
        self.configure()
        return child

    def configure(self, **hooks: object) -> None:
        """The configuration file, with a [hooks] section (schemas/cli.json) when given."""
        write_cli_config(self.cli.config, self.env.sim, self.cli.state_dir, PASSWORD_ENV,
                         [(ds, dataset) for dataset, ds in self.datastores.items()], [NAS])
        if hooks:
            lines = ["", "[hooks]"] + [f"{k} = {json.dumps(v)}" for k, v in hooks.items()]
            with self.cli.config.open("a") as handle:
                handle.write("\n".join(lines) + "\n")

    def policy(self, document: dict) -> None:
        proc = self.cli.run("policy", "create", json.dumps(document))
        assert proc.returncode == 0, proc.stderr

    def environ(self, path_prefix: Path | None = None) -> dict[str, str]:
        """What cron or systemd gives the scheduler: the password variable, and where
        vmware-coord-hook finds this configuration."""
        env = self.cli.environ(VMWARE_COORD_CONFIG=str(self.cli.config))
        if path_prefix is not None:
            env["PATH"] = f"{path_prefix}:{env['PATH']}"
        return env

    def sanoid_conf(self, **options: str) -> str:
        return sanoid.render(self.dataset, HOOK, options)

    def sanoid(self, path_prefix: Path | None = None, hash_seed: int | None = None,
               **options: str) -> sanoid.SanoidRun:
        run = sanoid.take_snapshots(self.sanoid_conf(**options), self.tmp / f"sanoid{time.monotonic_ns()}",
                                    self.environ(path_prefix), hash_seed=hash_seed)
        print(run)   # pytest shows it in full when the test fails
        return run

    def zrepl(self, dry_run: bool = False, watch: zrepl.Watch | None = None,
              **overrides: object) -> zrepl.FilesystemRun:
        job = zrepl.load_job(self.dataset, HOOK, **overrides)
        run = zrepl.snapshot_filesystem(job, self.dataset, self.environ(), dry_run=dry_run, watch=watch)
        print(run)   # pytest shows it in full when the test fails
        return run

    def journal_rows(self, query: str, *args: object) -> list[tuple]:
        """Read-only, so that looking never changes the journal."""
        path = self.cli.journal_path()
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(query, args).fetchall()
        except sqlite3.OperationalError:   # the product has not created its tables yet
            return []
        finally:
            db.close()

    # --- what the user relies on ---------------------------------------------------------

    def marked(self) -> list[str]:
        """Every VMware snapshot carrying the product's marker on this site's VMs."""
        return [f"{vm.name}: {n}" for vm in self.vms for n in inventory.snapshot_names(vm)
                if n.startswith(SNAPSHOT_NAME_PREFIX)]

    def powered_off(self) -> list[str]:
        return [vm.name for vm in self.vms if vm.runtime.powerState != "poweredOn"]

    def snapshots(self) -> list[str]:
        return self.env.pool.snapshots(self.dataset)

    def label(self, snapshot: str) -> str:
        return self.env.pool.get(snapshot, PROP_VMSYNCED)

    def report(self, snapshot: str) -> tuple[int, dict | None, str]:
        proc = self.cli.run("--json", "report", snapshot)
        return proc.returncode, json.loads(proc.stdout) if proc.returncode == 0 else None, proc.stderr

    def runs(self) -> list[dict]:
        proc = self.cli.run("--json", "runs")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def reconcile(self) -> subprocess.CompletedProcess:
        proc = self.cli.run("reconcile")
        print(f"reconcile: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def assert_truthful(self, expected: dict[str, str | set[str]]) -> None:
        """Exactly these snapshots exist, each labelled as expected (one of a set, where more
        than one answer is true), found by report with the same answer, and nothing is left
        on VMware."""
        assert sorted(self.snapshots()) == sorted(expected)
        labels = {s: self.label(s) for s in expected}
        allowed = {s: {e} if isinstance(e, str) else e for s, e in expected.items()}
        wrong = {s: labels[s] for s in expected if labels[s] not in allowed[s]}
        assert not wrong, f"{PROP_VMSYNCED} is {wrong}; expected {expected}"
        for snapshot in expected:
            code, manifest, stderr = self.report(snapshot)
            assert code == 0 and manifest is not None, f"report {snapshot}: exit {code}: {stderr}"
            run = self.env.pool.get(snapshot, PROP_RUN)
            assert run in ("-", manifest["run_id"]), f"{snapshot} names run {run}, report shows another"
            assert manifest["vmsynced"] is (labels[snapshot] == "Y"), (
                f"report {snapshot} says vmsynced={manifest['vmsynced']}, the snapshot {labels[snapshot]}")
        self.assert_nothing_left()

    def assert_nothing_left(self) -> None:
        assert self.marked() == []
        assert self.powered_off() == []


def script_exits(run: sanoid.SanoidRun) -> dict[str, list[int]]:
    """Each hook's exit code as sanoid reported it (only failures; it prints a wait status)."""
    codes: dict[str, list[int]] = {"pre": [], "post": []}
    for edge, status in _SCRIPT_FAILED.findall(run.stderr):
        codes[edge].append(int(status) >> 8)
    return codes


def hook_calls(run: sanoid.SanoidRun, edge: str) -> list[str]:
    """The datasets sanoid ran the pre or post script for, in order."""
    return re.findall(rf"executing {edge}_snapshot_script '[^']*' on dataset '([^']+)'", run.stdout)


def taken(run: sanoid.SanoidRun, dataset: str) -> list[str]:
    return [s for s in run.taken if s.partition("@")[0] == dataset]


@pytest.fixture
def site(sim, zfs_pool, module_si, tmp_path) -> Iterator[Site]:
    assert os.access(HOOK, os.X_OK), f"{HOOK} is missing: ./run setup installs the console scripts"
    env = EngineEnv.create(sim, zfs_pool, module_si, tmp_path)
    made = Site(env, CliEnv.create(env, tmp_path), tmp_path, {env.dataset: env.datastore})
    made.configure()
    yield made
    made.settle_simulator()


# --- sanoid ----------------------------------------------------------------------------


def test_sanoid_every_type_due_is_labelled_and_reported(site):
    site.vm("app1")
    site.vm("app2")
    run = site.sanoid()
    assert run.returncode == 0
    assert hook_calls(run, "pre") == [site.dataset] and hook_calls(run, "post") == [site.dataset]
    assert script_exits(run) == {"pre": [], "post": []}
    names = taken(run, site.dataset)
    # The example keeps monthly, daily and hourly snapshots; on zfs-fuse sanoid sees no
    # existing snapshot, so all three are due: three snapshots after one pre.
    assert sorted(n.rsplit("_", 1)[1] for n in names) == ["daily", "hourly", "monthly"]
    site.assert_truthful(dict.fromkeys(names, "Y"))
    runs = site.runs()
    assert len(runs) == 1 and runs[0]["vmsynced"] is True, runs
    assert {site.env.pool.get(n, PROP_RUN) for n in names} == {runs[0]["run_id"]}


def test_sanoid_recursive_yes_calls_the_hooks_per_child(site):
    child = site.add_child()
    site.vm("top")
    site.vm("low", child)
    # The parent's section first (sanoid's order is Perl's hash order): the parent's post
    # then ends before the child is snapshotted (the other order: the next test).
    conf = site.sanoid_conf(recursive="yes")
    seed = sanoid.seed_for(conf, site.tmp / "order", site.environ(), first=site.dataset)
    run = site.sanoid(hash_seed=seed, recursive="yes")
    assert run.returncode == 0
    # Children become sections of their own: a pre and a post for each dataset.
    assert hook_calls(run, "pre") == [site.dataset, child] == hook_calls(run, "post")
    assert script_exits(run) == {"pre": [], "post": []}
    names = taken(run, site.dataset) + taken(run, child)
    assert len(names) == 6
    site.assert_truthful(dict.fromkeys(names, "Y"))
    assert sorted(r["dataset"] for r in site.runs()) == sorted([site.dataset, child])


def _sanoid_hook(site: Site, phase: str, dataset: str, names: list[str]) -> subprocess.CompletedProcess:
    """The hook with exactly the environment sanoid 2.1.0 gives it (take_snapshots)."""
    env = {"SANOID_TARGET": dataset, "SANOID_TARGETS": dataset, "SANOID_SNAPNAMES": ",".join(names),
           "SANOID_TYPES": ",".join(n.rsplit("_", 1)[1] for n in names), "SANOID_SCRIPT": phase,
           # post's SANOID_SNAPNAME carries "dataset@" (sanoid aliases its array while snapshotting)
           "SANOID_SNAPNAME": names[0] if phase == "pre" else f"{dataset}@{names[0]}"}
    if phase == "post":
        env["SANOID_PRE_FAILURE"] = "0"
    proc = subprocess.run([HOOK], env=site.environ() | env, capture_output=True, text=True, timeout=60)
    print(f"{phase} {dataset}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def test_sanoid_recursive_yes_child_first_within_one_second(site):
    """sanoid names each section's snapshots after the second its turn begins: when the
    child's section comes first (Perl's hash order) and its hooks take less than a second,
    the parent's snapshots get the same names as the child's. Seen with the real sanoid;
    replayed here call by call, as sanoid makes them, because the timing is not the test's."""
    child = site.add_child()
    site.vm("top")
    site.vm("low", child)
    stamp = time.strftime("%Y-%m-%d_%H:%M:%S")
    names = [f"autosnap_{stamp}_{kind}" for kind in ("monthly", "daily", "hourly")]
    for dataset in (child, site.dataset):
        assert _sanoid_hook(site, "pre", dataset, names).returncode == 0
        for name in names:
            subprocess.run(["zfs", "snapshot", f"{dataset}@{name}"], check=True)
        post = _sanoid_hook(site, "post", dataset, names)
        # The parent's snapshot is not recursive: its post must leave the child's alone.
        assert post.returncode == 0, post.stderr
    site.assert_truthful({f"{d}@{n}": "Y" for d in (site.dataset, child) for n in names})


def test_sanoid_recursive_zfs_with_hooks_recursive_prepares_the_children(site):
    child = site.add_child()
    site.configure(recursive=[site.dataset])
    site.vm("top")
    low = site.vm("low", child)
    bare = site.vm("bare", child, tools_running=False)   # cannot be quiesced: below its requirement
    run = site.sanoid(recursive="zfs")
    assert run.returncode == 0
    # One "zfs snapshot -r" of the parent; the hooks are called for the parent only.
    assert hook_calls(run, "pre") == [site.dataset] and hook_calls(run, "post") == [site.dataset]
    assert "(zfs recursive)" in run.stdout
    # The parent's pre prepared the child's VMs too.
    runs = site.runs()
    assert len(runs) == 1, runs
    code, manifest, stderr = site.report(runs[0]["run_id"])
    assert code == 0, stderr
    by_name = {v["name"]: v for v in manifest["vms"]}
    assert by_name[low.name]["achieved"] == "quiesce", by_name[low.name]
    assert by_name[bare.name]["compliant"] is False, by_name[bare.name]
    # One VM below its requirement: the run's honest answer, N, on every snapshot it made.
    assert script_exits(run) == {"pre": [], "post": [1]}
    names = taken(run, site.dataset)
    children = [n.replace(f"{site.dataset}@", f"{child}@") for n in names]
    site.assert_truthful(dict.fromkeys(names + children, "N"))


def test_sanoid_recursive_zfs_without_hooks_recursive_is_never_a_false_y(site):
    child = site.add_child()
    site.vm("top")
    site.vm("low", child)
    run = site.sanoid(recursive="zfs")
    assert run.returncode == 0
    # The parent's own VM was fine, but the child's VMs were not prepared: N everywhere,
    # and post exits 1 saying what to configure.
    assert script_exits(run) == {"pre": [], "post": [1]}
    assert "hooks.recursive" in run.stderr
    names = taken(run, site.dataset)
    children = [n.replace(f"{site.dataset}@", f"{child}@") for n in names]
    assert {s: site.label(s) for s in names + children} == dict.fromkeys(names + children, "N")
    site.assert_truthful(dict.fromkeys(names + children, "N"))


def test_sanoid_slow_creates_do_not_kill_sanoid(site):
    site.vm("app")
    site.slow("slow")
    # sanoid's script_timeout of 5 s (the example keeps sanoid's default) and the default
    # hooks.timeout_seconds (5): both hooks must be gone before sanoid's alarm, which in
    # 2.1.0 kills sanoid itself when a script overruns.
    run = site.sanoid()
    try:
        assert run.returncode == 0
        assert "didn't finish in the allowed time" not in run.stderr
        assert hook_calls(run, "post") == [site.dataset]
        names = taken(run, site.dataset)
        assert len(names) == 3 and sorted(site.snapshots()) == sorted(names)
        assert {site.label(n) for n in names} == {"N"}
        # The late create lands after post ended the run: the detached "reconcile --settle"
        # post started removes it within seconds of landing.
        _wait_for(lambda: site.marked() == [], "the late VMware snapshot to be removed", 30)
        site.assert_truthful(dict.fromkeys(names, "N"))
    finally:
        sanoid.kill_leftovers(run)   # a hook sanoid left running when it died


def _failing_zfs_snapshot(tmp: Path) -> Path:
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "zfs").write_text('#!/bin/sh\nif [ "$1" = snapshot ]; then echo "cannot create snapshot: '
                              'out of space" >&2; exit 1; fi\nexec /usr/sbin/zfs "$@"\n')
    (shim / "zfs").chmod(0o755)
    return shim


def test_sanoid_failed_zfs_snapshot_still_undoes_everything(site):
    site.vm("app")
    db = site.vm("db")
    site.policy(DATABASES)
    run = site.sanoid(path_prefix=_failing_zfs_snapshot(site.tmp))
    assert run.returncode == 0
    assert "CRITICAL ERROR: zfs snapshot" in run.stderr
    # sanoid runs post anyway: it finds no snapshot (exit 3) and undoes the run.
    assert hook_calls(run, "post") == [site.dataset]
    assert script_exits(run) == {"pre": [], "post": [3]}
    assert site.snapshots() == []
    assert db.runtime.powerState == "poweredOn"
    site.assert_nothing_left()
    runs = site.runs()
    assert len(runs) == 1 and runs[0]["state"] == "ended", runs


def test_sanoid_strict_pre_with_no_inconsistent_snapshot_takes_nothing(site):
    site.vm("app")
    site.vm("bare", tools_running=False)   # cannot be quiesced: below its requirement
    site.configure(strict=True)
    run = site.sanoid(no_inconsistent_snapshot="yes")
    assert run.returncode == 0
    assert script_exits(run)["pre"] == [1]
    assert hook_calls(run, "post") == []   # sanoid skips post, although the example forces it
    assert site.snapshots() == [] and run.taken == []
    site.assert_nothing_left()


def test_sanoid_strict_pre_failure_then_forced_post_labels_n(site):
    site.vm("app")
    site.vm("bare", tools_running=False)
    site.configure(strict=True)
    run = site.sanoid()   # the example: force_post_snapshot_script = yes
    assert run.returncode == 0
    assert script_exits(run)["pre"] == [1]
    # The snapshot is taken anyway, and post (SANOID_PRE_FAILURE=1) labels it N; the report
    # of the run the strict pre refused says why.
    assert hook_calls(run, "post") == [site.dataset]
    names = taken(run, site.dataset)
    assert len(names) == 3
    assert {n: site.label(n) for n in names} == dict.fromkeys(names, "N")
    site.assert_truthful(dict.fromkeys(names, "N"))
    # Exit 1: the snapshot was taken, not every VM reached its requirement.
    assert script_exits(run)["post"] == [1]


def _hold_journal_lock(site: Site, seconds: float) -> subprocess.Popen:
    """A process holding the journal's lock for a while, as a running reconcile does."""
    site.cli.state_dir.mkdir(parents=True, exist_ok=True)
    lock = f"{site.cli.journal_path()}.lock"
    code = (f"import fcntl, time\nf = open({lock!r}, 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            f"print('locked', flush=True)\ntime.sleep({seconds})\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_sanoid_pre_does_not_outwait_its_timeout_on_a_running_reconcile(site):
    # README: "vmware-coord reconcile  # run from cron every 15 minutes": it can overlap a
    # sanoid run, and a long one (slow removals) holds the journal's lock meanwhile.
    site.vm("app")
    holder = _hold_journal_lock(site, 8)
    try:
        run = site.sanoid()
    finally:
        holder.terminate()
        holder.wait(10)
        holder.stdout.close()
    try:
        assert run.returncode == 0
        assert "didn't finish in the allowed time" not in run.stderr
        names = taken(run, site.dataset)
        assert len(names) == 3
        site.assert_truthful(dict.fromkeys(names, "Y"))
    finally:
        sanoid.kill_leftovers(run)


# --- zrepl -----------------------------------------------------------------------------


def test_zrepl_happy_path(site):
    site.vm("app1")
    site.vm("app2")
    run = site.zrepl()
    assert [h.ok for h in run.pre] == [True] and run.snapshot_error is None
    assert [h.ok for h in run.post] == [True]
    assert run.pre[0].env["ZREPL_TIMEOUT"] == "30"   # the example keeps zrepl's default
    snapshot = f"{site.dataset}@{run.snapname}"
    site.assert_truthful({snapshot: "Y"})
    assert [r["snapshot"] for r in site.runs()] == [snapshot]


def test_zrepl_strict_pre_with_err_is_fatal_takes_nothing(site):
    site.vm("app")
    site.vm("bare", tools_running=False)   # cannot be quiesced: below its requirement
    site.configure(strict=True)
    run = site.zrepl(err_is_fatal=True)
    assert [h.returncode for h in run.pre] == [1]
    assert not run.snapshot_attempted and run.post == []   # no snapshot, no post edge
    assert site.snapshots() == []
    site.assert_nothing_left()


def test_zrepl_slow_create_post_ends_within_its_timeout(site):
    site.vm("app")
    site.slow("slow")
    run = site.zrepl(timeout_s=3.0)
    # Both edges end within ZREPL_TIMEOUT: zrepl kills a hook that does not.
    assert [h.ok for h in run.pre] == [True] and run.snapshot_error is None
    assert [h.returncode for h in run.post] == [1]   # taken, not every VM as required
    snapshot = f"{site.dataset}@{run.snapname}"
    assert site.label(snapshot) == "N"
    _wait_for(lambda: site.marked() == [], "the late VMware snapshot to be removed", 30)
    site.assert_truthful({snapshot: "N"})


def test_zrepl_pre_killed_at_its_timeout_then_one_reconcile(site):
    site.vm("app")
    slow = site.slow("slow")
    stalled: list[int] = []

    def stall(edge: str, proc: subprocess.Popen) -> None:
        """Once pre has sent both creates (the simulator counts calls as they arrive), the
        hook stalls, as on a machine out of memory: zrepl's timeout then kills it in the
        middle of begin, with the slow create still in flight."""
        calls = site.env.sim.stats()
        if edge == "pre_snapshot" and not stalled and (
                calls.get("CreateSnapshotEx_Task", 0) + calls.get("CreateSnapshot_Task", 0) >= 2):
            os.kill(proc.pid, signal.SIGSTOP)
            stalled.append(proc.pid)

    site.env.sim.stats(reset=True)
    run = site.zrepl(timeout_s=5.0, watch=stall)
    assert stalled, "the pre hook ended before its creates were sent"
    assert [h.returncode for h in run.pre] == [None] and run.post == []   # killed: no post
    assert run.snapshot_error is None   # err_is_fatal: false, so zrepl takes the snapshot
    snapshot = f"{site.dataset}@{run.snapname}"
    # The create that was in flight lands on VMware after the kill; then one reconcile
    # (the killed hook's run is dead at once: its owner is gone) leaves nothing behind.
    _wait_for(lambda: any(m.startswith(f"{slow.name}:") for m in site.marked()), "the late create", 20)
    proc = site.reconcile()
    assert proc.returncode == 0
    site.assert_nothing_left()
    # The snapshot zrepl took without a post hook tells the truth too: the run was not
    # coordinated to its end.
    site.assert_truthful({snapshot: "N"})


def test_zrepl_post_killed_then_one_reconcile_after_post_wait(site):
    site.vm("app")
    site.configure(post_wait_seconds=10)   # the schema's minimum
    # The post hook hangs from its start (SIGSTOP) until zrepl's timeout kills it: the run
    # pre began is detached, alive for its post until post_wait_seconds have passed.
    stopped: list[int] = []

    def hang(edge: str, proc: subprocess.Popen) -> None:
        if edge == "post_snapshot" and not stopped:
            os.kill(proc.pid, signal.SIGSTOP)
            stopped.append(proc.pid)

    run = site.zrepl(timeout_s=3.0, watch=hang)
    assert [h.ok for h in run.pre] == [True] and run.snapshot_error is None
    assert [h.returncode for h in run.post] == [None]
    assert len(site.marked()) == 1   # the app VM's snapshot, waiting for a post that never comes
    (live_until,), = site.journal_rows("SELECT live_until FROM runs")
    time.sleep(max(0.0, live_until - time.time()) + 0.5)
    proc = site.reconcile()
    assert proc.returncode == 0
    site.assert_nothing_left()
    # Every VM had reached its requirement when zrepl took the snapshot (pre had ended):
    # Y is the truth, N the cautious answer; a missing label is neither.
    site.assert_truthful({f"{site.dataset}@{run.snapname}": {"Y", "N"}})


def test_zrepl_dry_run_does_nothing(site):
    db = site.vm("db")
    site.vm("app")
    site.policy(DATABASES)
    seen: list[tuple[str, str]] = []

    def between(edge: str, proc: subprocess.Popen) -> None:
        if edge == "post_snapshot" and not seen:   # pre ended: what a real run would have changed
            seen.append((db.runtime.powerState, ",".join(site.marked())))

    run = site.zrepl(dry_run=True, watch=between)
    assert [h.ok for h in run.pre] == [True] and [h.ok for h in run.post] == [True]
    assert all(h.env["ZREPL_DRYRUN"] == "true" for h in run.pre + run.post)
    assert seen == [("poweredOn", "")]
    assert not run.snapshot_attempted and site.snapshots() == []
    assert site.runs() == []
    site.assert_nothing_left()
