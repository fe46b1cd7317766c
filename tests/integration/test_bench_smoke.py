"""The benchmark harness at its smallest size runs both implementations and writes its table."""

from __future__ import annotations

import json
from pathlib import Path

from bench import harness


def test_bench_smallest_size_produces_table(tmp_path: Path) -> None:
    code = harness.main(["--sizes", "10", "--delays", "0", "--repeats", "1", "--out", str(tmp_path),
                         "--name", "smoke"])
    assert code == 0
    table = (tmp_path / "smoke.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| simulator |"))
    assert [c.strip() for c in header.strip("|").split("|")] == harness.COLUMNS
    data = json.loads((tmp_path / "smoke.json").read_text())
    # Every implementation on both simulator builds (prompt and 250 ms WaitForUpdatesEx).
    results = {(r["sim"], r["impl"]): r for r in data["results"]}
    assert set(results) == {(s, i) for s in harness.SIMS for i in harness.IMPLS}
    for sim in harness.SIMS:
        by_impl = {i: results[sim, i] for i in harness.IMPLS}
        for r in by_impl.values():
            assert r["source"] == "measured" and r["runs"] == 1
            assert r["calls_by_method"]["RemoveSnapshot_Task"] == 10
            assert r["metrics"]["watch_calls"] > 0
        # The engine reads the inventory in one retrieval; the stock walk costs ~29 calls a VM.
        assert by_impl["engine"]["metrics"]["inventory_calls"] <= 5
        assert by_impl["baseline"]["metrics"]["calls"] > 5 * by_impl["engine"]["metrics"]["calls"]
        # The stock algorithm waits for each task on its own; the engine's watcher does not.
        assert by_impl["baseline"]["metrics"]["watch_calls"] > 2 * by_impl["engine"]["metrics"]["watch_calls"]
    assert (tmp_path / "smoke.png").stat().st_size > 0
