"""The middlewared-free parts: alert aggregation, the privilege verdict, the installer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from truenas_vmware_coord.cli import install
from truenas_vmware_coord.cli.main import main
from truenas_vmware_coord.domain.model import Mapping
from truenas_vmware_coord.truenas import alerts
from truenas_vmware_coord.vsphere import privileges


def vm(endpoint: str, name: str, compliant: bool, mapping: str) -> dict:
    return {"endpoint_id": endpoint, "name": name, "compliant": compliant, "consistency": "crash",
            "required": "quiesced", "mapping_ids": [mapping]}


REPORT = {"dataset": "tank/vm", "run_id": "r1", "endpoint_errors": {"u@b:443": "login refused"},
          "vms": [vm("u@a:443", "db-01", False, "1"), vm("u@a:443", "app-01", True, "2"),
                  vm("u@c:443", "x", True, "4")]}
MAPPINGS = [Mapping("1", "u@a:443", "ds1", "tank/vm"), Mapping("2", "u@a:443", "ds2", "tank/vm"),
            Mapping("3", "u@b:443", "ds3", "tank/vm"), Mapping("4", "u@c:443", "ds4", "tank/vm")]


def test_one_alert_per_mapping_and_clearing_on_success() -> None:
    ops = alerts.run_alerts(REPORT, MAPPINGS, {"u@a:443": "a", "u@b:443": "b", "u@c:443": "c"})
    created = [(o.klass, o.args["key"]) for o in ops if o.action == "create"]
    deleted = [(o.klass, o.args) for o in ops if o.action == "delete"]
    assert created == [(alerts.ENDPOINT, "u@b:443"), (alerts.CONSISTENCY, "1")]
    assert (alerts.CONSISTENCY, "2") in deleted and (alerts.CONSISTENCY, "4") in deleted
    assert (alerts.ENDPOINT, "u@a:443") in deleted
    consistency = next(o for o in ops if o.klass == alerts.CONSISTENCY and o.action == "create")
    assert consistency.args["count"] == 1 and "db-01 (crash, needs quiesced)" in consistency.args["vms"]
    # An endpoint that failed says nothing about its VMs' alert: it is neither raised nor cleared.
    assert not any(o.klass == alerts.CONSISTENCY and o.args in ("3", {"key": "3"}) for o in ops)


def test_leftovers_alert_raised_and_cleared() -> None:
    assert alerts.leftover_alerts(0, {}) == [alerts.AlertOp("delete", alerts.LEFTOVERS, "leftovers")]
    (op,) = alerts.leftover_alerts(2, {"u@a:443": "unreachable"})
    assert op.action == "create" and op.args["count"] == 2 and "unreachable" in op.args["details"]


def test_missing_privileges_grouped_by_privilege() -> None:
    create = "VirtualMachine.State.CreateSnapshot"
    verdict = privileges.missing([("ds1", "System.Read", True), ("vm-a", create, False),
                                  ("vm-b", create, False)])
    assert verdict == {"VirtualMachine.State.CreateSnapshot": ["vm-a", "vm-b"]}


def test_install_and_uninstall_the_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    assert main(["install-plugin", "--plugins-dir", str(plugins), "--site", "/opt/coord"]) == 0
    loader = plugins / install.LOADER_NAME
    text = loader.read_text()
    assert install.MARKER in text and "'/opt/coord'" in text and "async def setup" in text
    compile(text, str(loader), "exec")
    assert main(["install-plugin", "--plugins-dir", str(plugins)]) == 0   # idempotent
    assert main(["uninstall-plugin", "--plugins-dir", str(plugins)]) == 0 and not loader.exists()
    loader.write_text("# someone else's module\n")
    assert main(["install-plugin", "--plugins-dir", str(plugins)]) == 4
    assert main(["uninstall-plugin", "--plugins-dir", str(plugins)]) == 4 and loader.exists()
    assert "not this product's loader" in capsys.readouterr().err


def test_loader_never_raises_even_when_the_package_cannot_load(tmp_path: Path) -> None:
    loader = install.install(tmp_path, tmp_path / "nowhere")
    spec = importlib.util.spec_from_file_location("middlewared_plugins_vmware_coord_probe", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("truenas_vmware_coord.vmware_coord", None)
    spec.loader.exec_module(module)   # middlewared is not importable here: logged, not raised
    import asyncio
    assert module._setup is None
    asyncio.run(module.setup(object()))


def test_the_topology_never_shows_a_password() -> None:
    from truenas_vmware_coord.truenas.facts import topology
    rows = [{"id": 1, "hostname": "vc.example.com", "username": "svc", "password": "hunter2-secret",
             "datastore": "ds1", "filesystem": "tank/vm"}]
    topo = topology(rows, [])
    assert topo.password_for(next(iter(topo.endpoints))) == "hunter2-secret"
    assert "hunter2" not in repr(topo) and "hunter2" not in str(topo)
