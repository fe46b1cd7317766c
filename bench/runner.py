"""One measured run in a fresh process: ``python -m bench.runner < spec.json`` -> JSON on stdout.

The harness starts this once per run so that peak RSS and CPU time belong to exactly one
implementation and one run (not to the harness, the simulator set-up or the other
implementation). The spec names the world (simulator, dataset) and the implementation:

- ``engine``: the product as the ``vmware-coord snapshot`` command builds it (a validated
  configuration file, ``VsphereConnector``, the SQLite journal, ``Coordinator.run``:
  begin -> ``zfs snapshot`` on zfs-fuse -> end), with the limits the spec gives;
- ``baseline``: bench/baseline.py, the stock TrueNAS 25.10 algorithm, around the same
  ``zfs snapshot``.

Phase times are wall clock; CPU time is user+system of this process over the run only
(``zfs`` itself runs in a child process and is not counted); peak RSS is the process's
high-water mark. For the engine, the SOAP calls made while logging in and reading the
inventory are counted from the simulator's ``/_stats`` at those two moments.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from truenas_vmware_coord.cli.config import load_config
from truenas_vmware_coord.domain.model import Inventory
from truenas_vmware_coord.domain.strategies.base import ActionKind
from truenas_vmware_coord.engine.coordinator import Coordinator
from truenas_vmware_coord.engine.journal import Journal
from truenas_vmware_coord.engine.ports import Connector, Hypervisor
from truenas_vmware_coord.vsphere.hypervisor import VsphereConnector
from truenas_vmware_coord.zfs import snapshot as zfs_snapshot
from truenas_vmware_coord.zfs.shell import LocalShell

from tools.rig.vcsim import StatsClient

from .baseline import StockRow, StockVmware

PASSWORD_ENV = "BENCH_VCENTER_PASSWORD"


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class MeteredConnector:
    """Wraps the real connector to record the calls and time of login and inventory."""

    def __init__(self, inner: Connector, stats: Callable[[], dict[str, int]]) -> None:
        self._inner = inner
        self._stats = stats
        self.phases: dict[str, dict[str, Any]] = {}

    def endpoint_ids(self) -> list[str]:
        return self._inner.endpoint_ids()

    def open(self, endpoint_id: str) -> Hypervisor:
        before, started = self._stats(), time.monotonic()
        hv = self._inner.open(endpoint_id)
        self._record("login", before, started)
        read = hv.inventory

        def inventory() -> Inventory:
            before, started = self._stats(), time.monotonic()
            result = read()
            self._record("inventory", before, started)
            return result

        hv.inventory = inventory  # type: ignore[method-assign]
        return hv

    def _record(self, phase: str, before: dict[str, int], started: float) -> None:
        seconds = time.monotonic() - started
        entry = self.phases.setdefault(phase, {"seconds": 0.0, "calls": {}})
        entry["seconds"] += seconds
        for k, v in _diff(self._stats(), before).items():
            entry["calls"][k] = entry["calls"].get(k, 0) + v


def _engine_config(spec: dict[str, Any], workdir: Path) -> Path:
    engine: dict[str, Any] = {"journal_path": str(workdir / "journal.sqlite")}
    if spec.get("limits"):
        engine["limits"] = spec["limits"]
    document = {
        "state_dir": str(workdir / "state"),
        "nas": {"addresses": [spec["nas"]]},
        "endpoints": {"vcsim": {"password_env": PASSWORD_ENV, "connection": {
            "host": spec["host"], "port": spec["port"], "username": spec["username"],
            "tls": {"sha256_fingerprint": spec["sha256"]}}}},
        "mappings": [{"id": spec["datastore"], "endpoint": "vcsim", "datastore": spec["datastore"],
                      "dataset": spec["dataset"]}],
        "engine": engine,
    }
    path = workdir / "config.json"
    path.write_text(json.dumps(document))
    return path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_engine(spec: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ[PASSWORD_ENV] = spec["password"]
    cfg = load_config(_engine_config(spec, workdir))
    shell = LocalShell()
    connector = MeteredConnector(VsphereConnector(cfg.endpoints, cfg.password_for),
                                 StatsClient(spec["host"], spec["port"], spec["sha256"]))
    journal = Journal(cfg.journal_path)
    coordinator = Coordinator(connector=connector, journal=journal, mappings=cfg.mappings,
                              storage=lambda: cfg.storage_facts(shell),
                              default_ladder=cfg.settings.default_ladder, config=cfg.settings.engine)
    marks: dict[str, float] = {}

    def take(properties: dict[str, str]) -> str:
        marks["zfs_start"] = time.monotonic()
        name = zfs_snapshot.create_snapshot(shell, spec["dataset"], f"bench-{uuid.uuid4().hex[:8]}",
                                            properties=properties)
        marks["zfs_end"] = time.monotonic()
        return name

    cpu0, started = _cpu(), time.monotonic()
    report = coordinator.run(spec["dataset"], take)
    finished, cpu = time.monotonic(), _cpu() - cpu0
    actions = [a for a in journal.actions(report["run_id"]) if a.kind is ActionKind.SNAPSHOT]
    lifetimes = [a.closed_at - a.done_at for a in actions if a.done_at and a.closed_at]
    return {
        "begin_s": marks["zfs_start"] - started, "zfs_s": marks["zfs_end"] - marks["zfs_start"],
        "end_s": finished - marks["zfs_end"], "cpu_s": cpu, "lifetimes": lifetimes,
        "snapshotted": len(lifetimes), "vmsynced": report["vmsynced"],
        "report_lifetime_max_s": max((v.get("lifetime_s") or 0.0 for v in report["vms"]), default=0.0),
        "phases": connector.phases,
    }


def run_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    shell = LocalShell()
    stock = StockVmware()
    row = StockRow(hostname=spec["host"], port=spec["port"], username=spec["username"],
                   password=spec["password"], datastore=spec["datastore"], filesystem=spec["dataset"],
                   sha256=spec["sha256"])
    cpu0, started = _cpu(), time.monotonic()
    context = stock.snapshot_proceed(spec["dataset"], [row])
    zfs_start = time.monotonic()
    # zettarepl sets freenas:vmsynced=Y at creation when the hook says synced.
    props = {"freenas:vmsynced": "Y"} if context and context["vmsynced"] else {}
    zfs_snapshot.create_snapshot(shell, spec["dataset"], f"bench-{uuid.uuid4().hex[:8]}",
                                 properties=props)
    zfs_end = time.monotonic()
    if context:
        stock.snapshot_end(context)
    finished, cpu = time.monotonic(), _cpu() - cpu0
    lifetimes = stock.timings.lifetimes()
    return {"begin_s": zfs_start - started, "zfs_s": zfs_end - zfs_start, "end_s": finished - zfs_end,
            "cpu_s": cpu, "lifetimes": lifetimes, "snapshotted": len(lifetimes),
            "vmsynced": bool(context and context["vmsynced"]), "phases": {}}


def main() -> int:
    spec = json.load(sys.stdin)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = (run_engine if spec["impl"] == "engine" else run_baseline)(spec)
    lifetimes = result.pop("lifetimes")
    result |= {"lifetime_max_s": max(lifetimes, default=0.0),
               "lifetime_median_s": statistics.median(lifetimes) if lifetimes else 0.0,
               "rss_import_mb": rss_before / 1024,
               "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
