"""exclude: the VM is not touched at all and is reported as excluded."""

from __future__ import annotations

from ..model import Consistency, Provider, Strategy
from .base import StrategyModule


class Exclude(StrategyModule):
    name = Strategy.EXCLUDE
    yields = Consistency.EXCLUDED
    summary = "leave the VM alone and report it as excluded"
    final = True
    providers = frozenset(Provider)
    alone = True
