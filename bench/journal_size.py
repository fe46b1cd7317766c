"""How big the journal grows: N runs of V VMs each, through the real engine and journal.

The VMware side is the in-memory hypervisor of the engine's unit tests
(tests/unit/fake_hypervisor.py): what is measured is what the engine writes (run contexts,
manifests, one journal row per VMware operation), which does not depend on the hypervisor.

    .venv/bin/python -m bench.journal_size [--runs 100] [--vms 500] [--keep-runs 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

import factories as f  # noqa: E402
from fake_hypervisor import FakeConnector, FakeVcenter  # noqa: E402
from truenas_vmware_coord.engine.config import EngineConfig  # noqa: E402
from truenas_vmware_coord.engine.coordinator import Coordinator  # noqa: E402
from truenas_vmware_coord.engine.journal import Journal  # noqa: E402


def size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


def measure(runs: int, vms: int, keep_runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "journal.sqlite"
        vc = FakeVcenter([f.vm(f"vm{i:04d}") for i in range(vms)])
        journal = Journal(path)
        coordinator = Coordinator(connector=FakeConnector(vc), journal=journal, mappings=[f.mapping(id="m1")],
                                  storage=f.storage, config=EngineConfig(retention_runs=keep_runs))
        started = time.monotonic()
        for i in range(runs):
            coordinator.run("tank/vm", lambda _props, i=i: f"tank/vm@run{i}")
        journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"runs": runs, "vms": vms, "keep_runs": keep_runs, "bytes": size(path),
                "kept": len(journal.runs(100000)), "seconds": round(time.monotonic() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--keep-runs", type=int, default=EngineConfig.retention_runs)
    args = parser.parse_args()
    result = measure(args.runs, args.vms, args.keep_runs)
    print(f"{result['runs']} runs of {result['vms']} VMs (keep {result['keep_runs']} runs): journal "
          f"{result['bytes'] / 1e6:.1f} MB, {result['bytes'] / result['kept'] / 1e3:.0f} kB per run kept, "
          f"{result['kept']} runs kept ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
