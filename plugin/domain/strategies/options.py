"""The settings a policy gives its strategies; each setting matters only to the one it names."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ... import schemas

_DEFAULTS = {k: v.get("default") for k, v in
             schemas.load_schema("policy")["$defs"]["options"]["properties"].items()}


class VssContext(enum.StrEnum):
    """Windows VSS context of a quiesced snapshot, in the words users write.

    ``application`` lets the guest's VSS writers run (application-consistent, as a plain
    quiesced snapshot does); ``file_system`` skips them, so another product's log chain is
    not truncated. The hypervisor adapter turns these into its own values.
    """

    APPLICATION = "application"
    FILE_SYSTEM = "file_system"


@dataclass(frozen=True)
class LadderOptions:
    quiesce_timeout_minutes: int | None = None  # the guest's quiesce timeout, 5..240
    deadline_seconds: int | None = None          # per-VM engine deadline; None = engine's
    vss_context: VssContext | None = None
    shutdown_timeout_seconds: int = _DEFAULTS["shutdown_timeout_seconds"]
    hard_power_off: bool = _DEFAULTS["hard_power_off"]
