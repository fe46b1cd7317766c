"""SOAP round trips and wall time of reading an inventory: one retrieval versus a naive loop.

Starts a simulator with 1,000 VMs (``-vm 500``) on 127.0.0.1 and, in the same run and over
the same kind of session, measures:

- ``read_inventory``: the adapter's ContainerView + one ``RetrievePropertiesEx``;
- a naive loop that reads name, config.instanceUuid, runtime.powerState,
  config.hardware.device, layoutEx.file, datastore, guest.toolsRunningStatus and snapshot
  of every VM through pyVmomi attribute access (each access is one ``Fetch``), the way the
  stock plugin walks VMs.

Calls are counted by the simulator itself (``GET /_stats``). The simulator answers in well
under a millisecond, so the wall times are CPU cost; ``--delay MS`` adds a per-call delay in
the simulator to model network latency; without it the table estimates the time each
approach would take at ``--rtt`` ms per round trip (wall time + calls x RTT).

    .venv/bin/python -m bench.inventory_calls [--vms-per-pool 500] [--delay 0] [--rtt 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyVmomi import vim  # noqa: E402
from truenas_vmware_coord.vsphere.inventory import read_inventory  # noqa: E402
from truenas_vmware_coord.vsphere.session import EndpointSettings, Session, open_session  # noqa: E402
from truenas_vmware_coord.vsphere.tls import VerifyMode  # noqa: E402

from tools.rig import vcsim  # noqa: E402


def naive_read(session: Session) -> list[dict[str, Any]]:
    """Property by property, VM by VM: what attribute access on managed objects costs."""
    content = session.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        vms = list(view.view)
    finally:
        view.DestroyView()
    out = []
    for vm in vms:
        out.append({
            "name": vm.name,
            "instance_uuid": vm.config.instanceUuid,
            "power_state": vm.runtime.powerState,
            "devices": vm.config.hardware.device,
            "files": vm.layoutEx.file,
            "datastores": vm.datastore,
            "tools": vm.guest.toolsRunningStatus,
            "snapshot": vm.snapshot,
        })
    return out


def measure(sim: vcsim.Simulator, action: Callable[[], Any]) -> tuple[int, int, float, dict[str, int]]:
    """(VMs read, SOAP calls, seconds, calls per method) of one action."""
    sim.stats(reset=True)
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    calls = sim.stats(reset=True)
    count = len(result.vms) if hasattr(result, "vms") else len(result)
    return count, sum(calls.values()), elapsed, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--vms-per-pool", type=int, default=500,
                        help="simulator -vm (the default model has 2 pools: 500 -> 1,000 VMs)")
    parser.add_argument("--delay", type=int, default=0, help="simulator -delay: ms added to every call")
    parser.add_argument("--rtt", type=float, default=5.0, help="round-trip time for the estimate (ms)")
    args = parser.parse_args(argv)

    sim = vcsim.start("-vm", str(args.vms_per_pool), "-delay", str(args.delay))
    try:
        settings = EndpointSettings(id="bench", host=sim.host, port=sim.port, username=sim.username,
                                    verify=VerifyMode.PINNED, fingerprint=sim.sha256,
                                    read_timeout=600.0)
        with open_session(settings, sim.password) as session:
            rows = [("read_inventory (one retrieval)", *measure(sim, lambda: read_inventory(session))),
                    ("naive loop (attribute access)", *measure(sim, lambda: naive_read(session)))]
    finally:
        sim.stop()

    # With --delay the wall time already includes a latency; estimate only without one.
    estimate = args.delay == 0
    print(f"Inventory read, govmomi simulator, {rows[0][1]} VMs, simulator delay {args.delay} ms/call\n")
    print("| approach | VMs | SOAP calls | wall time (s) |"
          + (f" at {args.rtt:g} ms RTT (est., s) |" if estimate else ""))
    print("|---|---:|---:|---:|" + ("---:|" if estimate else ""))
    for name, vms, calls, seconds, _ in rows:
        print(f"| {name} | {vms} | {calls:,} | {seconds:.2f} |"
              + (f" {seconds + calls * args.rtt / 1000:.1f} |" if estimate else ""))
    for name, _, _, _, per_method in rows:
        print(f"\n{name}: " + ", ".join(f"{m} {n:,}" for m, n in sorted(per_method.items())))
    (_, _, fast_calls, fast_s, _), (_, _, slow_calls, slow_s, _) = rows
    print(f"\nratio: {slow_calls / fast_calls:,.0f}x the calls, {slow_s / fast_s:.1f}x the wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
