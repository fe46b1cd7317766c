"""Engine settings from their schema (schemas/config.json), defaults included.

The schema is the one source of truth for names, ranges and defaults: this module only
turns a validated document into the engine's dataclasses, filling what is absent from the
schema's own ``default`` values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import schemas
from ..domain.errors import InvalidInput
from ..domain.model import Provider
from ..domain.policy import Ladder, parse_ladder
from .config import EngineConfig
from .limits import Limits


@dataclasses.dataclass(frozen=True)
class Settings:
    engine: EngineConfig
    default_ladder: Ladder                # VMware VMs no policy matches
    libvirt_default_ladder: Ladder        # libvirt guests no policy matches
    journal_path: str
    reconcile_interval_s: float


def parse_settings(document: dict[str, Any] | None, *, field: str = "engine") -> Settings:
    """Validate an engine-settings document and fill its defaults; InvalidInput if bad."""
    document = document or {}
    schemas.validate("config", document, field=field)
    defaults = schemas.defaults("config")
    doc = defaults | document
    limits = defaults["limits"] | doc.get("limits", {})
    retention = defaults["journal_retention"] | doc.get("journal_retention", {})
    if doc["vm_deadline_seconds"] > doc["begin_deadline_seconds"]:
        raise InvalidInput.single(f"{field}.vm_deadline_seconds",
                                  "must not be longer than begin_deadline_seconds "
                                  f"({doc['begin_deadline_seconds']})")
    engine = EngineConfig(
        limits=Limits(total=limits["global"], per_host=limits["per_host"],
                      per_datastore=limits["per_datastore"]),
        vm_deadline_s=float(doc["vm_deadline_seconds"]),
        begin_deadline_s=float(doc["begin_deadline_seconds"]),
        end_deadline_s=float(doc["end_deadline_seconds"]),
        marker_max_age_s=float(doc["marker_max_age_seconds"]),
        retention_days=float(retention["days"]), retention_runs=int(retention["runs"]))
    return Settings(engine=engine,
                    default_ladder=parse_ladder(doc["default_policy"], field=f"{field}.default_policy",
                                                provider=Provider.VSPHERE),
                    libvirt_default_ladder=parse_ladder(doc["default_libvirt_policy"],
                                                        field=f"{field}.default_libvirt_policy",
                                                        provider=Provider.LIBVIRT),
                    journal_path=doc["journal_path"],
                    reconcile_interval_s=float(doc["reconcile_interval_seconds"]))
