"""crash: no VMware snapshot; the VM's disks are crash-consistent inside the ZFS snapshot."""

from __future__ import annotations

from ..model import Consistency, Strategy
from .base import StrategyModule


class Crash(StrategyModule):
    name = Strategy.CRASH
    yields = Consistency.CRASH
    summary = "no VMware snapshot, crash-consistent in the ZFS snapshot"
    final = True
