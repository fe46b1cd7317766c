"""The stock VMware-Snapshots mapping, the plan, and the stock hooks answered by the plugin."""

from __future__ import annotations

from typing import Any

from .conftest import vmware_snapshots


def test_stock_mapping_created_against_the_simulator(
    api: Any, sim: Any, mapping: dict[str, Any], observe: Any
) -> None:
    row = mapping["row"]
    assert (row["hostname"], row["datastore"], row["filesystem"]) == (sim.host, "nfs01", "tank/vmware/nfs01")
    assert row["state"]["state"] == "PENDING"
    datastores = api.call(
        "vmware.get_datastores", {"hostname": sim.host, "username": sim.username, "password": sim.password}
    )
    observe("vmware.get_datastores", datastores)
    assert {"nfs01", "nfs02"} <= set(datastores)
    wrong = api.error(
        "vmware.create",
        {
            "hostname": sim.host,
            "username": sim.username,
            "password": sim.password,
            "datastore": "nope",
            "filesystem": "tank/vmware/nfs01",
        },
    )
    observe("vmware.create unknown datastore", wrong)
    assert wrong["type"] == "ValidationErrors" and wrong["errors"][0][0] == "vmware_create.datastore"


def test_plan_lists_the_vms_of_the_mapped_datastore(
    api: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    plan = api.call("vmware_coord.plan", "tank/vmware/nfs01")
    observe("vmware_coord.plan result", plan)
    names = sorted(vm["facts"]["name"] for vm in plan["vms"])
    assert names == vms["nfs01"], plan
    assert plan.get("endpoint_errors") in ({}, None), plan


def test_stock_hooks_are_answered_by_the_plugin(
    api: Any, sim: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    """snapshot_begin / snapshot_end as zfs.snapshot.create calls them (private, over the client)."""
    context = api.call("vmware.snapshot_begin", "tank/vmware/nfs01", False)
    observe("vmware.snapshot_begin context", context)
    # The stock context is {"vmsnapname", "vmsnapobjs", "vmsynced"}; the plugin's carries its run.
    assert "run_id" in context and "vmsnapobjs" not in context, context
    during = vmware_snapshots(sim)
    assert all(during[name] for name in vms["nfs01"]), during
    ended = api.call("vmware.snapshot_end", context)
    observe("vmware.snapshot_end result", ended)
    after = vmware_snapshots(sim)
    assert not any(after[name] for name in vms["nfs01"]), after
