"""middlewared entry module of truenas-vmware-coord.

It is imported by the loader that ``vmware-coord install-plugin`` places in middlewared's
``plugins/`` directory, so middlewared collects its services, alert classes and ``setup``
like those of any built-in plugin. Importing it takes over the stock hooks
(``truenas/middlewared/takeover.py``). Outside middlewared nothing imports it.
"""

import logging
from typing import Any

from truenas_vmware_coord.truenas.middlewared import alert_classes
from truenas_vmware_coord.truenas.middlewared.services import (
    VMwareCoordConfigService,
    VMwareCoordEndpointService,
    VMwareCoordPolicyService,
    VMwareCoordService,
)
from truenas_vmware_coord.truenas.middlewared.takeover import TAKEOVER_PROBLEMS

log = logging.getLogger(__name__)

# The alert classes registered themselves when alert_classes was imported; named here too,
# so that a look at this module shows everything the plugin adds to middlewared.
globals().update({cls.__name__: cls for cls in alert_classes.CLASSES.values()})
__all__ = ["VMwareCoordService", "VMwareCoordPolicyService", "VMwareCoordConfigService",
           "VMwareCoordEndpointService", "TAKEOVER_PROBLEMS", *alert_classes.__all__, "setup"]


async def setup(middleware: Any) -> None:
    """Tables, alerts and the trust baseline, then a reconcile in the background; never raises
    (middlewared runs every plugin's setup unguarded, and must start whatever happens here)."""
    try:
        await middleware.call("vmware_coord.startup")
    except Exception:  # noqa: BLE001
        log.error("truenas-vmware-coord: setup failed", exc_info=True)
