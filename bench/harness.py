"""The benchmark: this engine against the stock TrueNAS 25.10 algorithm, same rig, same run.

    .venv/bin/python -m bench.harness            # the default matrix, both builds (~25 min)
    .venv/bin/python -m bench.harness --quick    # N=10,100; 0/200 ms; 1 repeat (~2 min)

For every cell (a simulator build; N VMs on the mapped NFS datastore, Tools running; a
per-call latency ``d`` for CreateSnapshot(Ex)_Task and RemoveSnapshot_Task; optionally
``--rtt`` on every call) one simulator is started, and the implementations run alternately,
each repeat in a rotated order, each run in a fresh child process (bench/runner.py). The
builds (``--sims``): ``rig``, whose WaitForUpdatesEx answers within 10 ms, and
``stock-wait``, govmomi 0.24.2's own, which reports changes in rounds of 250 ms; a real
vCenter's timing is neither, so task watching is measured on both.

- ``engine``: the product at its default settings (limits 32 global / 16 per host / 30
  per datastore);
- ``engine-c32``: the product at a concurrency of 32 (32 / 32 / 32);
- ``baseline``: bench/baseline.py, the stock algorithm (serial).

Each run is begin -> ``zfs snapshot`` on zfs-fuse -> end; SOAP calls come from the
simulator's own counter, reset before each run. Expensive cells get fewer repeats
(``--cell-budget``), and a baseline cell predicted to take longer than ``--baseline-max``
is not run but extrapolated (formula in :func:`extrapolate`), except the target cell
(N=1000, d=200 ms) on the first build, which is always measured once. Results:
``<out>/<name>.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scenario import Cell, Rig, World, leftover_snapshots  # noqa: E402
from tools.rig import isolation  # noqa: E402

ENGINE, ENGINE_C32, BASELINE = "engine", "engine-c32", "baseline"
IMPLS = (ENGINE, ENGINE_C32, BASELINE)
LIMITS = {ENGINE: None, ENGINE_C32: {"global": 32, "per_host": 32, "per_datastore": 32}}
CONCURRENCY = {ENGINE: 30, ENGINE_C32: 32}   # defaults on one datastore: min(32 global, 30 per datastore)
TARGET_CELL = (1000, 200)
# The simulator builds (tools/rig/vcsim.py VARIANTS): the rig's, whose WaitForUpdatesEx
# answers within 10 ms, and one that keeps govmomi 0.24.2's 250 ms batching.
SIMS = ("rig", "stock-wait")
# SOAP methods that only wait for tasks (the engine's watcher; pyVim's WaitForTask in the
# baseline). DestroyView is left out: the inventory's view is destroyed with it.
WATCH_METHODS = ("CreatePropertyCollector", "CreateListView", "CreateFilter", "ModifyListView",
                 "WaitForUpdatesEx", "WaitForUpdates", "CancelWaitForUpdates",
                 "DestroyPropertyFilter", "DestroyPropertyCollector")
# The watcher's bound (plugin/vsphere/tasks.py): one view change and one wait every 0.1 s at
# most, plus its set-up and clean-up.
WATCH_CALLS_PER_S, WATCH_CALLS_FIXED = 20, 6
# Seconds per VM per phase besides the delay, used only to predict run times (refined from
# measured runs as the bench goes).
GUESS_OVERHEAD = {ENGINE: 0.004, ENGINE_C32: 0.004, BASELINE: 0.035}

COLUMNS = ["simulator", "N", "d (ms)", "implementation", "runs", "SOAP calls", "calls/VM",
           "inventory calls", "task-watch calls", "watch calls/s", "begin (s)", "begin/ideal",
           "end (s)", "max VM-snapshot life (s)", "median life (s)", "CPU (ms/VM)", "peak RSS (MB)",
           "source"]
METRICS = ("calls", "watch_calls", "begin_s", "end_s", "zfs_s", "lifetime_max_s", "lifetime_median_s",
           "cpu_s", "rss_peak_mb", "prep_s", "login_calls", "inventory_calls")


@dataclasses.dataclass
class Result:
    """The medians of one implementation in one cell."""

    sim: str
    vms: int
    delay_ms: int
    impl: str
    runs: int
    source: str                      # measured | extrapolated
    metrics: dict[str, float]
    calls_by_method: dict[str, int]

    @property
    def watch_per_s(self) -> float:
        """Task-watching calls per second of begin and end."""
        return self.metrics["watch_calls"] / max(1e-9, self.metrics["begin_s"] + self.metrics["end_s"])

    @property
    def ideal_begin_s(self) -> float | None:
        """ceil(N/C) waves of d, after logging in and reading the inventory (engine only)."""
        if self.impl == BASELINE:
            return None
        return math.ceil(self.vms / CONCURRENCY[self.impl]) * self.delay_ms / 1000 + self.metrics["prep_s"]

    def row(self) -> list[str]:
        m = self.metrics
        ideal = self.ideal_begin_s
        return [self.sim, str(self.vms), str(self.delay_ms), self.impl, str(self.runs),
                f"{m['calls']:.0f}", f"{m['calls'] / self.vms:.1f}",
                f"{m['inventory_calls']:.0f}" if self.impl != BASELINE else "(walk)",
                f"{m['watch_calls']:.0f}", f"{self.watch_per_s:.1f}",
                f"{m['begin_s']:.2f}", f"{m['begin_s'] / ideal:.2f}" if ideal else "-",
                f"{m['end_s']:.2f}", f"{m['lifetime_max_s']:.2f}",
                f"{m['lifetime_median_s']:.2f}", f"{m['cpu_s'] * 1000 / self.vms:.2f}",
                f"{m['rss_peak_mb']:.0f}", self.source]


def run_once(world: World, impl: str, workdir: Path) -> dict[str, Any]:
    """One run in a child process; the simulator's counters are reset first."""
    spec = world.spec() | {"impl": BASELINE if impl == BASELINE else ENGINE,
                           "limits": LIMITS.get(impl), "workdir": str(workdir)}
    world.sim.stats(reset=True)
    proc = subprocess.run([sys.executable, "-m", "bench.runner"], input=json.dumps(spec),
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout)
    result["calls_by_method"] = world.sim.stats(reset=True)
    result["calls"] = sum(result["calls_by_method"].values())
    result["watch_calls"] = sum(result["calls_by_method"].get(m, 0) for m in WATCH_METHODS)
    phases = result.pop("phases")
    # Logging in and reading the inventory: what comes before the first snapshot.
    result["prep_s"] = sum(p["seconds"] for p in phases.values())
    for phase in ("login", "inventory"):
        result[f"{phase}_calls"] = sum(phases.get(phase, {}).get("calls", {}).values())
    left = leftover_snapshots(world.sim)
    if left or result["snapshotted"] != world.cell.vms:
        raise RuntimeError(f"{impl} at {world.cell.key}: {result['snapshotted']} of "
                           f"{world.cell.vms} VMs snapshotted, {left} VMware snapshots left behind")
    return result


def summarise(cell: Cell, impl: str, runs: list[dict[str, Any]]) -> Result:
    metrics = {k: statistics.median(r[k] for r in runs) for k in METRICS}
    # The run whose call count is the median stands for the per-method breakdown.
    typical = sorted(runs, key=lambda r: r["calls"])[len(runs) // 2]
    return Result(cell.sim, cell.vms, cell.op_delay_ms, impl, len(runs), "measured", metrics,
                  typical["calls_by_method"])


def predict(impl: str, cell: Cell, overhead: dict[str, float]) -> float:
    """Predicted seconds for one run: serial for the baseline, waves of C for the engine."""
    per_op = cell.op_delay_ms / 1000 + overhead[impl] + 2 * cell.rtt_ms / 1000
    if impl == BASELINE:
        return 2 * cell.vms * per_op + 2
    return 2 * math.ceil(cell.vms / CONCURRENCY[impl]) * (per_op + 0.05) + 0.003 * cell.vms + 2


def extrapolate(base: Result, delay_ms: int) -> Result:
    """The stock algorithm at a larger delay, from its measured run at the same N.

    It is strictly serial: each VM adds exactly one create delay to the begin phase and one
    remove delay to the end phase, and every VM snapshot lives through one delay per VM
    (those created after it plus its own removal). So, for the begin and end times and
    the max/median lifetimes: ``m(N, d) = m(N, d0) + N * (d - d0)``. Calls, CPU and memory
    do not depend on the delay and are carried over from the measurement at ``d0`` (the
    baseline's waits start with the current state, so the simulator's wait timing does not
    change it either).
    """
    extra = base.vms * (delay_ms - base.delay_ms) / 1000
    metrics = dict(base.metrics)
    for key in ("begin_s", "end_s", "lifetime_max_s", "lifetime_median_s"):
        metrics[key] = base.metrics[key] + extra
    return Result(base.sim, base.vms, delay_ms, base.impl, 0, f"extrapolated from d={base.delay_ms} ms",
                  metrics, base.calls_by_method)


def run_cell(rig: Rig, cell: Cell, impls: list[str], repeats: int, budget: float,
             baseline_max: float, overhead: dict[str, float], log: Any) -> list[Result]:
    plan: dict[str, int] = {}
    for impl in impls:
        seconds = predict(impl, cell, overhead)
        # The target cell's baseline is measured once, on the rig's simulator.
        target = (cell.vms, cell.op_delay_ms) == TARGET_CELL and cell.sim == SIMS[0]
        if impl == BASELINE and seconds > baseline_max and not target:
            continue
        plan[impl] = max(1, min(repeats, int(budget // seconds)))
        log(f"  {impl}: {plan[impl]} run(s), ~{seconds:.0f} s each (predicted)")
    if not plan:
        return []
    world = rig.start(cell)
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in plan}
    try:
        order = list(plan)
        for repeat in range(max(plan.values())):
            # Alternate, and rotate who goes first, so drift hits every implementation alike.
            for impl in order[repeat % len(order):] + order[:repeat % len(order)]:
                if len(runs[impl]) >= plan[impl]:
                    continue
                started = time.monotonic()
                r = run_once(world, impl, rig.workdir / f"{impl}-{cell.vms}-{cell.op_delay_ms}-{repeat}")
                runs[impl].append(r)
                if impl == BASELINE:  # its measured cost per VM and phase, for later predictions
                    overhead[impl] = max(0.0, (r["begin_s"] + r["end_s"]) / (2 * cell.vms)
                                         - cell.op_delay_ms / 1000)
                log(f"  {impl} #{repeat + 1}: {time.monotonic() - started:.1f} s, begin "
                    f"{r['begin_s']:.2f} s, end {r['end_s']:.2f} s, {r['calls']} calls")
    finally:
        rig.stop(world)
    return [summarise(cell, impl, rs) for impl, rs in runs.items()]


# --- reporting -----------------------------------------------------------------------------

def environment() -> dict[str, str]:
    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from importlib.metadata import version

    commit = cmd("git", "rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if cmd("git", "status", "--porcelain", "plugin") else ""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} CPUs, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB, "
                   f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "pyvmomi": version("pyvmomi"),
        "govmomi (simulator)": cmd("dpkg-query", "-W", "-f=${Version}", "golang-github-vmware-govmomi-dev"),
        "zfs-fuse": cmd("dpkg-query", "-W", "-f=${Version}", "zfs-fuse"),
        "project": f"{commit}{dirty}",
    }


def _find(results: list[Result], sim: str, vms: int, delay: int, impl: str) -> Result | None:
    return next((r for r in results if (r.sim, r.vms, r.delay_ms, r.impl) == (sim, vms, delay, impl)), None)


def targets(results: list[Result], sim: str) -> list[tuple[str, str, str]]:
    """(target, met?, measured) at N=1000, d=200 ms on one simulator, for the lines the
    issues ask for; ratios against the baseline measured on the same simulator."""
    vms, delay = TARGET_CELL
    c32, dflt, base = (_find(results, sim, vms, delay, i) for i in (ENGINE_C32, ENGINE, BASELINE))
    if c32 is None:
        return []
    out = []

    def add(text: str, ok: bool, value: str) -> None:
        out.append((text, "met" if ok else "NOT met", value))

    m = c32.metrics
    add("inventory <= 5 calls per endpoint", m["inventory_calls"] <= 5,
        f"{m['inventory_calls']:.0f} calls ({m['inventory_calls'] / 5:.1f}x the limit), "
        f"plus {m['login_calls']:.0f} to log in; 1 endpoint")
    for r in (c32, dflt):
        if r is None:
            continue
        limit = 2 * vms + 50
        add(f"{r.impl}: whole run <= 2N+50 = {limit} calls", r.metrics["calls"] <= limit,
            f"{r.metrics['calls']:.0f} calls = {r.metrics['calls'] / limit:.3f}x the limit "
            f"(2N + {r.metrics['calls'] - 2 * vms:.0f})")
        seconds = r.metrics["begin_s"] + r.metrics["end_s"]
        bound = WATCH_CALLS_PER_S * seconds + WATCH_CALLS_FIXED
        versus = (f"; baseline {base.metrics['watch_calls']:.0f}, "
                  f"{base.metrics['watch_calls'] / max(1.0, r.metrics['watch_calls']):.0f}x more"
                  if base is not None else "")
        add(f"{r.impl}: task-watching calls <= {WATCH_CALLS_PER_S}/s of begin+end + {WATCH_CALLS_FIXED}",
            r.metrics["watch_calls"] <= bound,
            f"{r.metrics['watch_calls']:.0f} calls in {seconds:.1f} s = {r.watch_per_s:.1f}/s "
            f"({r.metrics['watch_calls'] / vms:.3f} per VM; bound {bound:.0f}){versus}")
    ideal = c32.ideal_begin_s or 0.0
    add("engine-c32: begin <= 1.25 x (ceil(N/C)*d + inventory time)", m["begin_s"] <= 1.25 * ideal,
        f"{m['begin_s']:.2f} s = {m['begin_s'] / ideal:.2f}x the ideal {ideal:.2f} s "
        f"({math.ceil(vms / 32)} x {delay / 1000:g} s + {m['prep_s']:.2f} s)")
    cpu = m["cpu_s"] * 1000 / vms
    if base is not None:
        for key, text in (("begin_s", "begin phase >= 15x faster"),
                          ("lifetime_max_s", "max VM-snapshot lifetime >= 15x shorter")):
            ratio = base.metrics[key] / m[key]
            add(f"engine-c32 vs baseline: {text}", ratio >= 15,
                f"{ratio:.1f}x ({base.metrics[key]:.1f} s / {m[key]:.2f} s; baseline {base.source})")
        base_cpu = base.metrics["cpu_s"] * 1000 / vms
        cpu_versus = f"; baseline {base_cpu:.2f} ms/VM, {base_cpu / cpu:.1f}x more"
    else:
        cpu_versus = ""
    add("engine CPU < 2 ms per VM", cpu < 2, f"{cpu:.2f} ms/VM ({cpu / 2:.2f}x the limit){cpu_versus}")
    add("engine peak RSS < 250 MB", m["rss_peak_mb"] < 250,
        f"{m['rss_peak_mb']:.0f} MB ({m['rss_peak_mb'] / 250:.2f}x the limit)")
    return out


def markdown(results: list[Result], env: dict[str, str], command: str) -> str:
    lines = ["# Benchmark results", "", f"Command: `{command}`", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "Medians over `runs` runs (0 runs: extrapolated, see bench/harness.py `extrapolate`).",
              "Lifetimes: from the create task's completion to the removal task's completion.",
              "CPU: user+system of the run's process over begin, zfs snapshot and end, per VM.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in results]
    for sim in dict.fromkeys(r.sim for r in results):
        checks = targets(results, sim)
        if checks:
            lines += ["", f"## Targets at N={TARGET_CELL[0]}, d={TARGET_CELL[1]} ms, simulator {sim}", "",
                      "| target | result | measured |", "|---|---|---|"]
            lines += [f"| {t} | {ok} | {v} |" for t, ok, v in checks]
    lines += ["", "## SOAP calls by method (the run with the median call count)", "",
              "| simulator | N | d (ms) | implementation | calls by method |", "|---|---|---|---|---|"]
    lines += [f"| {r.sim} | {r.vms} | {r.delay_ms} | {r.impl} | "
              + ", ".join(f"{k} {v}" for k, v in sorted(r.calls_by_method.items(), key=lambda kv: -kv[1]))
              + " |" for r in results if r.source == "measured"]
    return "\n".join(lines) + "\n"


def plot(results: list[Result], path: Path) -> None:
    """Begin time and max lifetime against N, on the first simulator of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sim = results[0].sim if results else SIMS[0]
    results = [r for r in results if r.sim == sim]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {ENGINE: ("tab:blue", "-"), ENGINE_C32: ("tab:green", "-"), BASELINE: ("tab:red", "--")}
    for ax, key, title in ((axes[0], "begin_s", "begin phase (s)"),
                           (axes[1], "lifetime_max_s", "max VM-snapshot lifetime (s)")):
        for impl in IMPLS:
            for delay in sorted({r.delay_ms for r in results}):
                pts = sorted((r.vms, r.metrics[key], r.source != "measured") for r in results
                             if r.impl == impl and r.delay_ms == delay)
                if not pts:
                    continue
                color, line = styles[impl]
                alpha = 0.35 + 0.65 * delay / max(1, max(r.delay_ms for r in results))
                ax.plot([p[0] for p in pts], [p[1] for p in pts], line, color=color, alpha=alpha,
                        marker="o", label=f"{impl}, d={delay} ms")
                hollow = [p for p in pts if p[2]]
                ax.plot([p[0] for p in hollow], [p[1] for p in hollow], "o", mfc="white", color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("VMs on the datastore (N)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"truenas-vmware-coord vs stock TrueNAS 25.10, simulator {sim} (hollow: extrapolated)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="N=10,100; d=0,200 ms; 1 repeat; baseline runs over 15 s extrapolated")
    p.add_argument("--sizes", default="10,100,1000", help="VM counts (default 10,100,1000)")
    p.add_argument("--delays", default="0,200,1000", help="create/remove latency in ms")
    p.add_argument("--rtt", type=int, default=0, help="ms added to every SOAP call (simulator -delay)")
    p.add_argument("--sims", default=",".join(SIMS),
                   help="simulator builds (default rig,stock-wait: prompt and 250 ms WaitForUpdatesEx)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--cell-budget", type=float, default=60.0,
                   help="seconds per implementation per cell; fewer repeats past it (min 1)")
    p.add_argument("--baseline-max", type=float, default=120.0,
                   help="a baseline run predicted longer than this is extrapolated, not run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--name", help="file name stem (default: bench, or quick)")
    p.add_argument("--shared-zfs", action="store_true",
                   help="use the machine's zfs-fuse daemon instead of a private one")
    args = p.parse_args(argv)
    if args.quick:
        # A smoke size: the serial baseline's slow cells are extrapolated (the full matrix
        # measures and checks them), which keeps two builds within about a minute.
        args.sizes, args.delays, args.repeats = "10,100", "0,200", 1
        args.baseline_max = min(args.baseline_max, 15.0)
    args.name = args.name or ("quick" if args.quick else "bench")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    wrapped = None if args.shared_zfs else isolation.isolated_command(
        [sys.executable, "-m", "bench.harness", *argv])
    if wrapped:
        return subprocess.run(wrapped, cwd=ROOT, env=os.environ | {isolation.MARKER: "1"}).returncode
    command = "python -m bench.harness " + " ".join(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    delays = [int(x) for x in args.delays.split(",")]
    sims = [s for s in args.sims.split(",") if s]
    impls = [i for i in args.impls.split(",") if i]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    overhead = dict(GUESS_OVERHEAD)
    results: list[Result] = []
    rig = Rig()
    try:
        for sim in sims:
            for vms in sizes:
                for delay in delays:
                    cell = Cell(vms, delay, args.rtt, sim)
                    log(f"{cell.key}")
                    results += run_cell(rig, cell, impls, args.repeats, args.cell_budget,
                                        args.baseline_max, overhead, log)
    finally:
        rig.close()
    # Baseline cells that were too slow to run: from the largest measured delay at that N.
    if BASELINE in impls:
        for sim in sims:
            for vms in sizes:
                measured = [r for r in results if r.impl == BASELINE and (r.sim, r.vms) == (sim, vms)]
                for delay in delays:
                    if measured and not _find(results, sim, vms, delay, BASELINE):
                        below = [r for r in measured if r.delay_ms < delay]
                        if below:
                            results.append(extrapolate(max(below, key=lambda r: r.delay_ms), delay))
    order = {impl: i for i, impl in enumerate(IMPLS)}
    results.sort(key=lambda r: (sims.index(r.sim), r.vms, r.delay_ms, order[r.impl]))
    env = environment() | {"wall time of this invocation": f"{time.monotonic() - started:.0f} s",
                           "rtt": f"{args.rtt} ms"}
    (out / f"{args.name}.md").write_text(markdown(results, env, command))
    (out / f"{args.name}.json").write_text(json.dumps(
        {"environment": env, "results": [dataclasses.asdict(r) for r in results]}, indent=1))
    plot(results, out / f"{args.name}.png")
    log(f"wrote {out / args.name}.md, .json, .png in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
