"""crash: nothing is asked of the hypervisor; the VM's disks are crash-consistent inside the ZFS
snapshot."""

from __future__ import annotations

from ..model import Consistency, Provider, Strategy
from .base import StrategyModule


class Crash(StrategyModule):
    name = Strategy.CRASH
    yields = Consistency.CRASH
    summary = "no VMware snapshot, crash-consistent in the ZFS snapshot"
    final = True
    providers = frozenset(Provider)
