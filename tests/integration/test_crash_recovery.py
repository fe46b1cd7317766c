"""SIGKILL at the three dangerous moments of a run; reconcile must leave nothing behind.

The process is the real ``vmware-coord snapshot`` command. Killed after its intent is
journaled (a create still in flight), after its creates (before the ZFS snapshot), and
after the ZFS snapshot (removals in flight): each time ``vmware-coord reconcile`` must
remove every VMware snapshot it made, power the powered-off VM on again, and no ZFS
snapshot may be lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cli_env import CliEnv
from engine_env import EngineEnv
from truenas_vmware_coord.engine.journal import ActionState, Journal

from tools.rig import inventory

DATABASES = {"name": "databases", "priority": 1, "ladder": ["power_off", "crash"],
             "options": {"shutdown_timeout_seconds": 20}, "match": {"name_glob": "*-db"}}


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _journal(cli: CliEnv) -> list[tuple[str, ActionState]]:
    if not cli.journal_path().exists():
        return []
    journal = Journal(cli.journal_path())
    try:
        return [(a.vm_name, a.state) for a in journal.actions()]
    finally:
        journal.close()


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def _scenario(sim, zfs_pool, module_si, tmp_path: Path) -> tuple[EngineEnv, CliEnv, object]:
    env = EngineEnv.create(sim, zfs_pool, module_si, tmp_path)
    for name in ("app1", "app2"):
        env.vm(name)
    db = env.vm("db")
    cli = CliEnv.create(env, tmp_path)
    cli.add_policy(DATABASES)
    subprocess.run(["zfs", "snapshot", f"{env.dataset}@before"], check=True)
    return env, cli, db


def _reconcile_and_check(env: EngineEnv, cli: CliEnv, db) -> None:
    proc = cli.run("reconcile")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert env.product_snapshots() == []
    assert db.runtime.powerState == "poweredOn"
    assert not [s for _, s in _journal(cli) if s.open]
    assert f"{env.dataset}@before" in env.pool.snapshots(env.dataset)


def test_killed_after_the_intent(sim, zfs_pool, module_si, tmp_path):
    env, cli, db = _scenario(sim, zfs_pool, module_si, tmp_path)
    slow = env.vm("slow")
    inventory.set_extra_config(slow, {"vcsim.delay.CreateSnapshot_Task": "3000"})
    proc = cli.start("snapshot", env.dataset, "--name", "killed1")
    intent = (f"{env.datastore}-slow", ActionState.INTENT)
    _wait_for(lambda: intent in _journal(cli), "the slow VM's intent in the journal")
    time.sleep(0.5)  # its create call is on the wire
    _kill(proc)
    # The create that was in flight still completes on the server: a snapshot nobody ends.
    _wait_for(lambda: any("-slow:" in s for s in env.product_snapshots()), "the late snapshot")
    _reconcile_and_check(env, cli, db)


def test_killed_after_the_creates(sim, zfs_pool, module_si, tmp_path):
    env, cli, db = _scenario(sim, zfs_pool, module_si, tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    marker = tmp_path / "zfs-snapshot-started"
    # A zfs that stalls on "snapshot": the moment between the creates and the ZFS snapshot.
    (shim / "zfs").write_text(
        f'#!/bin/sh\nif [ "$1" = snapshot ]; then touch {marker}; sleep 60; fi\nexec /usr/sbin/zfs "$@"\n')
    (shim / "zfs").chmod(0o755)
    proc = cli.start("snapshot", env.dataset, "--name", "killed2", path_prefix=shim)
    _wait_for(marker.exists, "the ZFS snapshot step")
    assert len(env.product_snapshots()) == 2
    assert db.runtime.powerState == "poweredOff"
    _kill(proc)
    _reconcile_and_check(env, cli, db)


def test_killed_after_the_zfs_snapshot(sim, zfs_pool, module_si, tmp_path):
    env, cli, db = _scenario(sim, zfs_pool, module_si, tmp_path)
    for name in ("app1", "app2"):
        vm = inventory.vm_named(module_si, f"{env.datastore}-{name}")
        inventory.set_extra_config(vm, {"vcsim.delay.RemoveSnapshot_Task": "3000"})
    proc = cli.start("snapshot", env.dataset, "--name", "killed3")
    _wait_for(lambda: f"{env.dataset}@killed3" in env.pool.snapshots(env.dataset), "the ZFS snapshot")
    time.sleep(0.3)  # the removals are now in flight
    _kill(proc)
    _reconcile_and_check(env, cli, db)
    assert env.pool.get(f"{env.dataset}@killed3", "org.truenas.vmware-coord:run")
