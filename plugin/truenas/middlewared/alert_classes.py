"""The plugin's alert classes (raised and cleared by ``truenas.alerts``' operations)."""

from typing import Any

from middlewared.alert.base import Alert, AlertCategory, AlertClass, AlertLevel, OneShotAlertClass


class _Keyed(OneShotAlertClass):
    """One alert per key; the next run replaces or clears it (no person needed)."""

    async def create(self, args: dict[str, Any]) -> Alert:
        return Alert(type(self), args, key=args["key"])

    async def delete(self, alerts: list[Alert], query: Any) -> list[Alert]:
        return [a for a in alerts if a.args["key"] != query]


class VMwareCoordConsistencyAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMs Below Their Required Consistency"
    text = ("%(count)d VM(s) on %(datastores)s (%(hostname)s) are not as consistent as their policy requires "
            "in the snapshot of %(dataset)s (run %(run_id)s): %(vms)s. See vmware_coord.manifest.")


class VMwareCoordEndpointAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMware Login or Certificate Check Failed"
    text = ("Connecting to %(hostname)s failed: %(error)s. Its VMs were snapshotted crash-consistent. "
            "A changed or self-signed certificate can be pinned with vmware_coord.endpoint.")


class VMwareCoordLeftoversAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMware Snapshots Left Behind"
    text = "%(count)d VMware snapshot(s) or power operation(s) could not be undone yet: %(details)s."


class VMwareCoordTakeoverAlertClass(AlertClass, _Keyed):
    category = AlertCategory.PLUGINS
    level = AlertLevel.ERROR
    title = "VMware Coordination Not Active"
    text = ("The stock VMware snapshot hooks do not have the expected shape (%(problems)s); the stock "
            "behaviour is left in place. Update truenas-vmware-coord for this TrueNAS version.")
