"""middlewared entry module of truenas-vmware-coord.

This is the only module that imports ``middlewared``. Outside TrueNAS (tests, the CLI,
other ZFS hosts) importing it must be harmless, so the middlewared imports are guarded and
nothing is registered when the framework is absent. The services, the hook takeover and
the alerts arrive with the middleware issue; until then this module only declares itself.
"""

from __future__ import annotations

try:  # pragma: no cover - only inside TrueNAS
    import middlewared  # noqa: F401

    MIDDLEWARED_AVAILABLE = True
except ImportError:
    MIDDLEWARED_AVAILABLE = False


async def setup(middleware: object) -> None:
    """middlewared calls every plugin module's setup(); this one must never fail."""
    return None
