"""One libvirt endpoint's settings (no libvirt import: a configuration naming none loads
without the binding)."""

from __future__ import annotations

import dataclasses

from .. import schemas

ENDPOINT_PREFIX = "libvirt:"
AGENT_TIMEOUT_S = schemas.load_schema("cli")["properties"]["libvirt"]["additionalProperties"][
    "properties"]["agent_timeout_seconds"]["default"]


@dataclasses.dataclass(frozen=True)
class LibvirtSettings:
    """A name (the endpoint id is ``libvirt:<name>``), the URI, the agent response timeout."""

    name: str
    uri: str
    agent_timeout_s: int = AGENT_TIMEOUT_S
    workers: int = 8               # guests read and acted on at once

    @property
    def id(self) -> str:
        return f"{ENDPOINT_PREFIX}{self.name}"
