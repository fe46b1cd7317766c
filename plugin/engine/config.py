"""How the engine runs: limits, deadlines and ages (defaults: schemas/config.json)."""

from __future__ import annotations

import dataclasses

from .. import schemas
from .limits import Limits

_DEFAULTS = schemas.defaults("config")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    limits: Limits = Limits()
    # one VM's whole ladder, unless its policy says less
    vm_deadline_s: float = float(_DEFAULTS["vm_deadline_seconds"])
    # the whole begin phase: the ZFS snapshot waits no longer
    begin_deadline_s: float = float(_DEFAULTS["begin_deadline_seconds"])
    # removal and power-on; what is left goes to reconcile
    end_deadline_s: float = float(_DEFAULTS["end_deadline_seconds"])
    # a marked snapshot of an unknown run older than this goes
    marker_max_age_s: float = float(_DEFAULTS["marker_max_age_seconds"])
    # finished runs the journal keeps: newer than this many days, and at most this many
    retention_days: float = float(_DEFAULTS["journal_retention"]["days"])
    retention_runs: int = int(_DEFAULTS["journal_retention"]["runs"])
    active_run_max_age_s: float = 3600.0   # a begun run older than this is dead, owner or not
    detached_run_max_age_s: float = 900.0  # a hook run (no owner process) is dead after this
    # a create that got no answer may still land this long after it was sent
    in_doubt_window_s: float = 120.0
