"""What every phase of the transaction works with (the coordinator holds one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ..domain.manifest import VmOutcome
from ..domain.model import Mapping
from ..domain.policy import DEFAULT_LIBVIRT_LADDER, Ladder, Policy
from ..domain.storage import StorageFacts
from .config import EngineConfig
from .journal import Journal
from .ports import Connector
from .sessions import SessionPool

Progress = Callable[[str, VmOutcome | None], None]


@dataclasses.dataclass
class Parts:
    connector: Connector
    journal: Journal
    mappings: Sequence[Mapping]
    storage: Callable[[], StorageFacts]
    policies: Sequence[Policy]
    default_ladder: Ladder
    config: EngineConfig
    clock: Callable[[], float]
    progress: Progress
    sessions: SessionPool
    libvirt_default_ladder: Ladder = DEFAULT_LIBVIRT_LADDER
    # Endpoints looked at for every plan, their VMs placed by the host paths of their disks
    # (libvirt on this host), not found through a datastore mapping.
    local_endpoints: Sequence[str] = ()
