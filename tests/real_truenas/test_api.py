"""vmware_coord.policy / config / endpoint CRUD through the real framework, with its error shapes.

What is asserted is what a client of TS-25.10.x sees (``truenas_api_client`` exceptions built
from the JSON-RPC error, ``api/base/server/ws_handler/rpc.py``); every shape is also recorded
in observed.json so the double (tests/middleware_double) can be corrected where it differs.
"""

from __future__ import annotations

import errno
from typing import Any

POLICY = {"name": "gpu-hosts", "priority": 10, "ladder": ["crash"], "match": {"has_blocker": ["passthrough"]}}


def test_plugin_is_loaded_and_the_stock_hooks_taken_over(api: Any, observe: Any) -> None:
    methods = api.call("core.get_methods")
    ours = sorted(m for m in methods if m.startswith("vmware_coord."))
    observe("core.get_methods vmware_coord.*", ours)
    assert {
        "vmware_coord.plan",
        "vmware_coord.policy.create",
        "vmware_coord.endpoint.fingerprint",
        "vmware_coord.config.update",
        "vmware_coord.run",
        "vmware_coord.manifest",
    } <= set(ours)
    # No "VMware Coordination Not Active" alert: the takeover applied at import.
    klasses = [a["klass"] for a in api.call("alert.list")]
    observe("alert.list klasses at start", klasses)
    assert "VMwareCoordTakeover" not in klasses


def test_policy_crud(api: Any, observe: Any) -> None:
    created = api.call("vmware_coord.policy.create", POLICY)
    observe("vmware_coord.policy.create result", created)
    assert (
        created["name"] == "gpu-hosts" and created["ladder"] == ["crash"] and isinstance(created["id"], int)
    )
    assert api.call("vmware_coord.policy.get_instance", created["id"]) == created
    assert [p["id"] for p in api.call("vmware_coord.policy.query", [["name", "=", "gpu-hosts"]])] == [
        created["id"]
    ]
    updated = api.call("vmware_coord.policy.update", created["id"], {"priority": 20, "description": "GPUs"})
    assert (updated["priority"], updated["description"]) == (20, "GPUs")
    assert api.call("vmware_coord.policy.delete", created["id"]) is True
    assert api.call("vmware_coord.policy.query") == []


def test_policy_validation_errors(api: Any, observe: Any) -> None:
    bad_ladder = api.error("vmware_coord.policy.create", {**POLICY, "ladder": ["teleport"]})
    observe("policy.create bad ladder", bad_ladder)
    assert bad_ladder["type"] == "ValidationErrors"
    assert all(e[2] == errno.EINVAL for e in bad_ladder["errors"])
    assert any(e[0].startswith("vmware_coord_policy_create.ladder") for e in bad_ladder["errors"]), bad_ladder

    missing = api.error("vmware_coord.policy.create", {"name": "x"})
    observe("policy.create missing fields", missing)
    assert missing["type"] == "ValidationErrors"

    # The framework validates the argument model first: a non-dict never reaches do_create.
    wrong_type = api.error("vmware_coord.policy.create", "not a dict")
    observe("policy.create non-dict argument", wrong_type)
    assert wrong_type["type"] == "ValidationErrors"
    # Named by the argument field alone (api/base/handler/accept.py:70-84), as the double does.
    assert [e[0] for e in wrong_type["errors"]] == ["vmware_coord_policy_create"], wrong_type

    api.call("vmware_coord.policy.create", POLICY)
    try:
        duplicate = api.error("vmware_coord.policy.create", {**POLICY, "priority": 11})
        observe("policy.create duplicate name", duplicate)
        assert duplicate["type"] == "ValidationErrors"
    finally:
        for p in api.call("vmware_coord.policy.query"):
            api.call("vmware_coord.policy.delete", p["id"])


def test_not_found_shapes(api: Any, observe: Any) -> None:
    """What "no such id" looks like from each CRUD method (the double models it as CallError)."""
    shapes = {
        "policy.get_instance": api.error("vmware_coord.policy.get_instance", 9999),
        "policy.update": api.error("vmware_coord.policy.update", 9999, {"priority": 5}),
        "policy.delete": api.error("vmware_coord.policy.delete", 9999),
        "endpoint.get_instance": api.error("vmware_coord.endpoint.get_instance", 9999),
        "endpoint.update": api.error("vmware_coord.endpoint.update", 9999, {"port": 444}),
        "endpoint.delete": api.error("vmware_coord.endpoint.delete", 9999),
        "vmware.get_instance (stock)": api.error("vmware.get_instance", 9999),
    }
    observe("not found", shapes)
    for name, shape in shapes.items():
        # service_exception.py:115 InstanceNotFound is a ValidationError(None, message, ENOENT),
        # so api/base/server/ws_handler/rpc.py:366-373 sends it as "Invalid params" (-32602) and
        # the client raises ValidationErrors: one error, no field (None), errno ENOENT.
        assert shape["type"] == "ValidationErrors", (name, shape)
        assert len(shape["errors"]) == 1 and shape["errors"][0][0] is None, (name, shape)
        assert shape["errors"][0][2] == errno.ENOENT and "does not exist" in shape["errors"][0][1], (
            name,
            shape,
        )


def test_config_update_and_validation(api: Any, observe: Any) -> None:
    before = api.call("vmware_coord.config.config")
    observe("vmware_coord.config.config", before)
    assert before["begin_deadline_seconds"] == 90
    after = api.call("vmware_coord.config.update", {"begin_deadline_seconds": 60})
    assert after["begin_deadline_seconds"] == 60 and after["id"] == before["id"]
    try:
        too_small = api.error("vmware_coord.config.update", {"begin_deadline_seconds": 1})
        observe("config.update below minimum", too_small)
        assert too_small["type"] == "ValidationErrors"
        assert any("begin_deadline_seconds" in e[0] for e in too_small["errors"]), too_small
        fixed = api.error("vmware_coord.config.update", {"journal_path": "/tmp/x"})
        observe("config.update journal_path", fixed)
        assert fixed["type"] == "ValidationErrors"
        assert fixed["errors"][0][0] == "vmware_coord_config_update.journal_path"
    finally:
        api.call("vmware_coord.config.update", {"begin_deadline_seconds": before["begin_deadline_seconds"]})


def test_endpoint_crud_and_validation(api: Any, sim: Any, mapping: dict[str, Any], observe: Any) -> None:
    endpoint = mapping["endpoint"]
    observe("vmware_coord.endpoint.create result", endpoint)
    assert endpoint["hostname"] == sim.host and endpoint["port"] == 443
    assert endpoint["tls"] == {"sha256_fingerprint": sim.sha256}

    unknown = api.error("vmware_coord.endpoint.create", {"hostname": "nowhere.example", "port": 443})
    observe("endpoint.create unknown host", unknown)
    assert unknown["type"] == "ValidationErrors"
    assert unknown["errors"][0][0] == "vmware_coord_endpoint_create.hostname"

    duplicate = api.error("vmware_coord.endpoint.create", {"hostname": sim.host})
    observe("endpoint.create duplicate", duplicate)
    assert duplicate["type"] == "ValidationErrors"

    bad_port = api.error("vmware_coord.endpoint.update", endpoint["id"], {"port": 0})
    observe("endpoint.update port 0", bad_port)
    assert bad_port["type"] == "ValidationErrors"

    updated = api.call("vmware_coord.endpoint.update", endpoint["id"], {"read_timeout_seconds": 45})
    assert updated["read_timeout_seconds"] == 45 and updated["tls"] == endpoint["tls"]


def test_fingerprint_reads_the_simulators_certificate(api: Any, sim: Any, observe: Any) -> None:
    result = api.call("vmware_coord.endpoint.fingerprint", sim.host, sim.port)
    observe("endpoint.fingerprint result", result)
    assert result["sha256_fingerprint"] == sim.sha256
