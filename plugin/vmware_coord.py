"""middlewared entry module of truenas-vmware-coord.

It is imported by the loader that ``vmware-coord install-plugin`` places in middlewared's
``plugins/`` directory, so middlewared collects its services, alert classes and ``setup``
like those of any built-in plugin. Importing it takes over the stock hooks
(``truenas/middlewared/takeover.py``). Outside middlewared nothing imports it.
"""

import logging
from typing import Any

from truenas_vmware_coord.truenas import alerts as alert_ops
from truenas_vmware_coord.truenas.middlewared.alert_classes import (
    VMwareCoordConsistencyAlertClass,
    VMwareCoordEndpointAlertClass,
    VMwareCoordLeftoversAlertClass,
    VMwareCoordTakeoverAlertClass,
)
from truenas_vmware_coord.truenas.middlewared.services import (
    VMwareCoordConfigService,
    VMwareCoordEndpointService,
    VMwareCoordPolicyService,
    VMwareCoordService,
)
from truenas_vmware_coord.truenas.middlewared.takeover import TAKEOVER_PROBLEMS

log = logging.getLogger(__name__)

__all__ = ["VMwareCoordService", "VMwareCoordPolicyService", "VMwareCoordConfigService",
           "VMwareCoordEndpointService", "VMwareCoordConsistencyAlertClass", "VMwareCoordEndpointAlertClass",
           "VMwareCoordLeftoversAlertClass", "VMwareCoordTakeoverAlertClass", "setup"]


async def setup(middleware: Any) -> None:
    """Create the tables and start a reconcile in the background; never raises."""
    try:
        await middleware.call("vmware_coord.create_tables")
    except Exception:  # noqa: BLE001 - middlewared must start whatever happens here
        log.error("truenas-vmware-coord: creating tables failed", exc_info=True)
        return
    ops = ([alert_ops.AlertOp("create", alert_ops.TAKEOVER, {"key": "takeover",
                                                            "problems": "; ".join(TAKEOVER_PROBLEMS)})]
           if TAKEOVER_PROBLEMS else [alert_ops.AlertOp("delete", alert_ops.TAKEOVER, "takeover")])
    for op in ops:
        try:
            await middleware.call(f"alert.oneshot_{op.action}", op.klass, op.args)
        except Exception:  # noqa: BLE001
            log.warning("truenas-vmware-coord: alert %s failed", op.klass, exc_info=True)
    try:
        # A job: it runs in the background, so a slow vCenter never delays startup.
        await middleware.call("vmware_coord.reconcile")
    except Exception:  # noqa: BLE001
        log.warning("truenas-vmware-coord: the startup reconcile could not start", exc_info=True)
