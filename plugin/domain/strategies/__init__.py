"""Every strategy, one module each, registered in the one table everything else reads:
policy validation and resolution, the engine, the journal, the privilege check, the schema
checks and the UI's descriptions."""

from __future__ import annotations

from collections.abc import Mapping

from ..model import Strategy
from .base import ActionKind, StrategyModule
from .crash import Crash
from .exclude import Exclude
from .fsfreeze import Fsfreeze
from .memory import Memory
from .pause import Pause
from .power_off import PowerOff
from .quiesce import Quiesce
from .suspend import Suspend

STRATEGIES: Mapping[Strategy, StrategyModule] = {
    module.name: module for module in (Quiesce(), Memory(), Crash(), PowerOff(), Suspend(), Exclude(),
                                       Fsfreeze(), Pause())}

# The strategy that undoes each kind, for journal rows written before each row remembered
# its strategy (the kinds added since always name theirs).
UNDO_BY_KIND: Mapping[ActionKind, Strategy] = {
    ActionKind.SNAPSHOT: Strategy.QUIESCE, ActionKind.POWER_OFF: Strategy.POWER_OFF,
    ActionKind.SUSPEND: Strategy.SUSPEND, ActionKind.FREEZE: Strategy.FSFREEZE,
    ActionKind.PAUSE: Strategy.PAUSE}


def strategy(name: Strategy | str) -> StrategyModule:
    return STRATEGIES[Strategy(name)]
