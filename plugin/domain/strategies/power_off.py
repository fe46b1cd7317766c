"""power_off: shut the guest down within a timeout (hard power-off only if the policy
allows it), let the ZFS snapshot capture it at rest, power it on again."""

from __future__ import annotations

from ..model import BlockerKind, Consistency, Provider, Strategy
from .base import ActionKind, Operations, Step
from .options import LadderOptions
from .power import StopsTheVm


class PowerOff(StopsTheVm):
    name = Strategy.POWER_OFF
    yields = Consistency.POWERED_OFF
    summary = "shut the guest down and power it on afterwards"
    providers = frozenset(Provider)   # a libvirt guest shuts down through ACPI or its agent
    pruned_by = {BlockerKind.NO_TOOLS: (
        "VMware Tools are not running: a guest shutdown needs them, and a hard power-off "
        "would only be crash-consistent")}
    privileges = {"VirtualMachine.Interact.PowerOff": "power VMs off",
                  "VirtualMachine.Interact.PowerOn": "power VMs on again"}
    action = ActionKind.POWER_OFF
    failure_may_linger = True   # a shutdown that did not finish in time may still finish

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        timeout = min(float(options.shutdown_timeout_seconds), max(0.0, ops.remaining_s()))
        shutdown = ops.shutdown_guest(timeout)
        if shutdown.ok:
            return shutdown
        if shutdown.state == "timed_out":
            message = f"the guest did not shut down within {timeout:.0f} s"
        else:
            message = f"guest shutdown refused: {shutdown.message}"
        if not options.hard_power_off:
            return Step("failed", message=message + "; hard power-off is not allowed by policy")
        return ops.power_off()
