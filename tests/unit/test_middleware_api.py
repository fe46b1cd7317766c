"""The plugin's services through the JSON-RPC shape ``midclt call`` uses, on the documented
middlewared double (tests/middleware_double): policy CRUD with every validation path, the
settings, per-host endpoint settings, the API-model rule, the refused hook takeover, setup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from policy_repo_contract import PolicyRepositoryContract, doc

from tests.middleware_double import harness, stock_vmware
from tests.middleware_double.middleware import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    Middleware,
)


@pytest.fixture
def mw(tmp_path: Path) -> Iterator[Middleware]:
    middleware, _plugin = harness.start(tmp_path)
    harness.wait_jobs(middleware)
    yield middleware
    harness.stop(middleware)


def ok(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, answer
    return answer["result"]


def invalid(answer: dict[str, Any]) -> dict[str, str]:
    """Field -> message of an "Invalid params" answer."""
    assert answer["error"]["code"] == INVALID_PARAMS, answer
    return {field: message for field, message, _errno in answer["error"]["data"]["extra"]}


POLICY = {"name": "db", "priority": 10, "ladder": ["power_off", "crash"], "match": {"name_glob": "db-*"}}


def test_policy_crud_round_trip(mw: Middleware) -> None:
    created = ok(mw.midclt("vmware_coord.policy.create", json.dumps(POLICY)))
    assert created["id"] and created["ladder"] == ["power_off", "crash"] and created["enabled"] is True
    assert ok(mw.midclt("vmware_coord.policy.query")) == [created]
    assert ok(mw.midclt("vmware_coord.policy.query", '[["name", "=", "db"]]')) == [created]
    assert ok(mw.midclt("vmware_coord.policy.get_instance", str(created["id"]))) == created
    updated = ok(mw.midclt("vmware_coord.policy.update", str(created["id"]), '{"enabled": false}'))
    assert updated["enabled"] is False and updated["match"] == {"name_glob": "db-*"}
    assert ok(mw.midclt("vmware_coord.policy.delete", str(created["id"]))) is True
    assert ok(mw.midclt("vmware_coord.policy.query")) == []


@pytest.mark.parametrize(("document", "expected"), [
    ({"priority": 1, "ladder": ["crash"]}, {"vmware_coord_policy_create.name": "required field is missing"}),
    ({**POLICY, "colour": "red"}, {"vmware_coord_policy_create.colour": "unknown field 'colour'"}),
    ({**POLICY, "priority": "high"},
     {"vmware_coord_policy_create.priority": "must be a whole number, not a string"}),
    ({**POLICY, "ladder": ["quiesce", "teleport"]}, {"vmware_coord_policy_create.ladder.1": None}),
    ({**POLICY, "name": " bad"}, {"vmware_coord_policy_create.name": None}),
    ({**POLICY, "id": 7}, {"vmware_coord_policy_create.id": "is assigned by the store; leave it out"}),
    ({**POLICY, "match": {"name_regex": "("}}, {"vmware_coord_policy_create.match.name_regex": None}),
])
def test_policy_create_rejections_name_the_field(mw: Middleware, document: dict, expected: dict) -> None:
    errors = invalid(mw.midclt("vmware_coord.policy.create", json.dumps(document)))
    assert set(errors) == set(expected), errors
    for field, message in expected.items():
        assert message is None or errors[field] == message
    assert ok(mw.midclt("vmware_coord.policy.query")) == []


def test_policy_uniqueness_and_update_paths(mw: Middleware) -> None:
    first = ok(mw.midclt("vmware_coord.policy.create", json.dumps(POLICY)))
    clash = invalid(mw.midclt("vmware_coord.policy.create", json.dumps({**POLICY, "name": "DB"})))
    assert set(clash) == {"vmware_coord_policy_create.name", "vmware_coord_policy_create.priority"}
    web = {**POLICY, "name": "web", "priority": 20}
    second = ok(mw.midclt("vmware_coord.policy.create", json.dumps(web)))
    assert set(invalid(mw.midclt("vmware_coord.policy.update", str(second["id"]), '{"priority": 10}'))) == {
        "vmware_coord_policy_update.priority"}
    assert set(invalid(mw.midclt("vmware_coord.policy.update", str(first["id"]), '{"id": 99}'))) == {
        "vmware_coord_policy_update.id"}
    assert set(invalid(mw.midclt("vmware_coord.policy.update", str(first["id"]), '{"ladder": []}'))) == {
        "vmware_coord_policy_update.ladder"}
    missing = mw.midclt("vmware_coord.policy.update", "999", '{"enabled": false}')
    # As the real framework answers it (TS-25.10.6 service_exception.py:115-118, rpc.py:366-373,
    # seen in tests/real_truenas): "Invalid params", one error with no field and errno ENOENT.
    assert missing["error"]["code"] == INVALID_PARAMS
    [[field, message, errno_]] = missing["error"]["data"]["extra"]
    assert (field, errno_) == (None, 2) and "999" in message
    gone = mw.midclt("vmware_coord.policy.delete", "999")["error"]
    assert gone["code"] == INVALID_PARAMS and gone["data"]["extra"][0][::2] == [None, 2]


def test_argument_models_reject_before_the_schema(mw: Middleware) -> None:
    # The API models run first, as middlewared's accept_params does, and name each error by the
    # argument field alone (TS-25.10.6 api/base/handler/accept.py:70-84, ".".join(loc); the real
    # framework answers "vmware_coord_policy_create" here, tests/real_truenas/test_api.py).
    assert set(invalid(mw.midclt("vmware_coord.policy.create", '"not an object"'))) == {
        "vmware_coord_policy_create"}
    assert set(invalid(mw.midclt("vmware_coord.policy.update", '"one"', "{}"))) == {"id"}
    assert set(invalid(mw.midclt("vmware_coord.policy.update", "1", "[]"))) == {"vmware_coord_policy_update"}
    too_many = invalid(mw.midclt("vmware_coord.policy.delete", "1", "2"))
    assert too_many == {"": "Too many arguments (expected 1, found 2)"}   # accept.py:47-50
    assert mw.midclt("vmware_coord.no_such_method")["error"]["code"] == METHOD_NOT_FOUND


def test_config_defaults_update_and_rejections(mw: Middleware) -> None:
    config = ok(mw.midclt("vmware_coord.config.config"))
    assert config["begin_deadline_seconds"] == 90
    assert config["default_policy"] == {"ladder": ["quiesce", "crash"]}
    change = '{"begin_deadline_seconds": 40, "vm_deadline_seconds": 20}'
    updated = ok(mw.midclt("vmware_coord.config.update", change))
    assert (updated["begin_deadline_seconds"], updated["vm_deadline_seconds"]) == (40, 20)
    assert ok(mw.midclt("vmware_coord.config.config")) == updated
    assert set(invalid(mw.midclt("vmware_coord.config.update", '{"vm_deadline_seconds": 60}'))) == {
        "vmware_coord_config_update.vm_deadline_seconds"}
    two_bad = '{"limits": {"global": 0}, "colour": 1}'
    assert set(invalid(mw.midclt("vmware_coord.config.update", two_bad))) == {
        "vmware_coord_config_update.limits.global", "vmware_coord_config_update.colour"}
    assert set(invalid(mw.midclt("vmware_coord.config.update", '{"journal_path": "/tmp/j"}'))) == {
        "vmware_coord_config_update.journal_path"}
    assert set(invalid(mw.midclt("vmware_coord.config.update", '{"default_policy": {"ladder": ["x"]}}'))) == {
        "vmware_coord_config_update.default_policy.ladder.0"}


def test_endpoint_settings_only_for_mapped_hosts(mw: Middleware) -> None:
    harness.add_mapping(mw, "vc.example.com", "svc", "secret", "ds1", "tank/vm")
    assert set(invalid(mw.midclt("vmware_coord.endpoint.create", '{"hostname": "other.example.com"}'))) == {
        "vmware_coord_endpoint_create.hostname"}
    bad = invalid(mw.midclt("vmware_coord.endpoint.create", json.dumps(
        {"hostname": "vc.example.com", "username": "x", "tls": {"sha256_fingerprint": "zz"}})))
    assert set(bad) == {"vmware_coord_endpoint_create.username"}
    bad = invalid(mw.midclt("vmware_coord.endpoint.create", json.dumps(
        {"hostname": "vc.example.com", "port": 0, "tls": {"sha256_fingerprint": "zz"}})))
    assert set(bad) == {"vmware_coord_endpoint_create.port",
                        "vmware_coord_endpoint_create.tls.sha256_fingerprint"}
    pin = "AB" * 32
    created = ok(mw.midclt("vmware_coord.endpoint.create", json.dumps(
        {"hostname": "vc.example.com", "port": 8443, "tls": {"sha256_fingerprint": pin}})))
    assert (created["port"], created["tls"]) == (8443, {"sha256_fingerprint": pin})
    assert created["read_timeout_seconds"] == 60
    assert set(invalid(mw.midclt("vmware_coord.endpoint.create", '{"hostname": "VC.example.com"}'))) == {
        "vmware_coord_endpoint_create.hostname"}
    assert ok(mw.midclt("vmware_coord.endpoint.update", str(created["id"]), '{"port": 443}'))["port"] == 443
    assert ok(mw.midclt("vmware_coord.endpoint.delete", str(created["id"]))) is True
    # The password of the stock row stays encrypted in the table, clear only to internal callers.
    raw = mw.datastore.execute("SELECT password FROM storage_vmwareplugin").scalar()
    assert "secret" not in raw and mw.call_sync("vmware.query")[0]["password"] == "secret"


def test_public_models_are_published_under_middlewared_api(mw: Middleware) -> None:
    import sys
    models = sys.modules["truenas_vmware_coord.truenas.middlewared.models"]
    service = mw.services["vmware_coord"]
    for name in ("plan", "run", "reconcile", "runs", "manifest", "check_privileges"):
        method = getattr(type(service), name)
        assert method.new_style_accepts.__module__ == models.API_MODULE, name
        assert method.roles, name
    assert sys.modules[models.API_MODULE].VMwareCoordPlanArgs is type(service).plan.new_style_accepts
    # ...and the double enforces the framework's rule, so this is not vacuous:
    from middlewared.api import api_method
    from middlewared.api.base import BaseModel

    class ElsewhereArgs(BaseModel):
        x: int

    with pytest.raises(ValueError, match="defined in middlewared.api package"):
        api_method(ElsewhereArgs, models.VMwareCoordPlanResult, roles=["X"])


def test_takeover_keeps_the_stock_decorators(mw: Middleware) -> None:
    import sys
    cls = sys.modules["middlewared.plugins.vmware"].VMWareService
    stock = sys.modules["middlewared.plugins.vmware"]
    takeover = sys.modules["truenas_vmware_coord.truenas.middlewared.takeover"]
    for name in takeover.HOOKS:
        fn = cls.__dict__[name]
        assert fn._vmware_coord and fn._private, name
    assert cls.periodic_snapshot_task_proceed.new_style_accepts is stock.VMWarePeriodicSnapshotTaskProceedArgs
    assert cls.periodic_snapshot_task_end._job["lock"] is None       # job() defaults, as stock
    assert mw.alert.list() == []


def test_unexpected_stock_shape_is_left_alone_and_alerted(tmp_path: Path) -> None:
    mw, plugin = harness.start(tmp_path, stock_shape="changed")
    try:
        harness.wait_jobs(mw)
        assert plugin.TAKEOVER_PROBLEMS and "periodic_snapshot_task_begin" in plugin.TAKEOVER_PROBLEMS[0]
        import sys
        cls = sys.modules["middlewared.plugins.vmware"].VMWareService
        takeover = sys.modules["truenas_vmware_coord.truenas.middlewared.takeover"]
        assert not any(getattr(cls.__dict__[n], "_vmware_coord", False) for n in takeover.HOOKS)
        assert [a.klass.name for a in mw.alert.list()] == ["VMwareCoordTakeover"]
        stock_vmware.STOCK_CALLS.clear()
        mw.call_sync("vmware.snapshot_end", {})
        assert stock_vmware.STOCK_CALLS == [("snapshot_end", ({},))]   # stock behaviour stays
    finally:
        harness.stop(mw)


class TestDatastorePolicyRepository(PolicyRepositoryContract):
    """The shared repository contract, against middlewared's datastore (the double's SQLite)."""

    @pytest.fixture
    def repo(self, tmp_path: Path) -> Iterator[Any]:
        from truenas_vmware_coord.truenas.policy_store import DatastorePolicyRepository
        middleware, _ = harness.start(tmp_path)
        harness.wait_jobs(middleware)
        yield DatastorePolicyRepository(middleware.call_sync)
        harness.stop(middleware)


def test_contract_helper_is_used() -> None:
    assert doc()["ladder"] == ["quiesce", "crash"]


@pytest.mark.parametrize("release", ["25.10", "26"])
def test_the_manual_snapshot_context_crosses_json_where_the_creator_runs_in_the_process_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    """TS-25.10.6 zfs.snapshot runs in middlewared's process pool (plugins/zfs_/snapshot.py:18),
    whose call_sync goes over a websocket client (worker.py:50-83): the begin context reaches
    vmware.snapshot_end JSON-serialised. 26.0's pool.snapshot has no process pool: the same object."""
    from tests.middleware_double import middleware as double

    context = {"run_id": "r1", "vms": ("app-01", "app-02"), "by_key": {1: True}, "vmsynced": False}
    ended: list[Any] = []
    mw = double.Middleware(tmp_path, release=release)
    try:
        mw.services["vmware"] = double._Plain(snapshot_begin=lambda dataset, recursive: context,
                                              snapshot_end=ended.append)
        mw.zfs = lambda *args: ""
        monkeypatch.setattr(double.ZfsSnapshot, "query", lambda self, *args: {"id": "tank/a@s"})
        mw.call_sync("pool.snapshot.create", {"dataset": "tank/a", "name": "s", "vmware_sync": True})
        if release == "25.10":
            assert ended == [{"run_id": "r1", "vms": ["app-01", "app-02"], "by_key": {"1": True},
                              "vmsynced": False}]
            mw.services["vmware"].snapshot_begin = lambda dataset, recursive: {"when": object()}
            with pytest.raises(TypeError, match="not JSON serializable"):
                mw.call_sync("zfs.snapshot.create", {"dataset": "tank/a", "name": "t", "vmware_sync": True})
        else:
            assert ended == [context] and ended[0] is context
    finally:
        mw.stop()


def test_without_a_system_pool_the_journal_falls_back_to_var_db_system(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemdataset.config() answers path None when the system dataset is not mounted at
    /var/db/system (TS-25.10.6 plugins/sysdataset.py:119-141); the plugin keeps its journal at
    /var/db/system then. The journal is opened elsewhere (tmp_path), recording the path asked for,
    so nothing is written to the real /var/db/system."""
    from truenas_vmware_coord.engine.journal import Journal
    from truenas_vmware_coord.truenas import runtime

    asked: list[Path] = []

    class Elsewhere(Journal):
        def __init__(self, path: Any, **kwargs: Any) -> None:
            asked.append(Path(path))
            super().__init__(tmp_path / "elsewhere" / Path(path).name, **kwargs)

    monkeypatch.setattr(runtime, "Journal", Elsewhere)
    (tmp_path / "elsewhere").mkdir()
    mw, _plugin = harness.start(tmp_path / "nas", system_dataset=False)
    try:
        harness.wait_jobs(mw)
        assert mw.call_sync("systemdataset.config")["path"] is None
        assert ok(mw.midclt("vmware_coord.runs", "5")) == []
        assert asked and set(asked) == {Path("/var/db/system/vmware_coord/journal.sqlite")}, asked
        assert (tmp_path / "elsewhere" / "journal.sqlite").is_file()
    finally:
        harness.stop(mw)
