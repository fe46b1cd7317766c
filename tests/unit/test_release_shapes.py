"""One plugin for TrueNAS 25.10, 26.0 and 27: the shapes that differ, each read from the
release's source (truenas/middleware at TS-25.10.6, TS-26.0.0-BETA.3 and master
66d9e1b9c328 = 27.0.0-BETA.1; paths under src/middlewared/middlewared/), reproduced by the
double's release modes and met by the plugin, which detects them when it is imported.

TS-26.0 and master need Python 3.13 (PEP 696 defaults, e.g. TS-26.0.0-BETA.3
service/crud_service_part.py:26), so their real middlewared cannot run on this machine;
these tests stand in, and tests/real_truenas runs the real one where it can.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.middleware_double import RELEASES, harness
from tests.middleware_double.middleware import Middleware


@pytest.fixture(params=RELEASES)
def mw(request, tmp_path: Path) -> Iterator[Middleware]:
    middleware, _plugin = harness.start(tmp_path, release=request.param)
    harness.wait_jobs(middleware)
    yield middleware
    harness.stop(middleware)


def test_the_plugin_loads_and_takes_the_hooks_over_on_every_release(mw: Middleware) -> None:
    # plugins/vmware.py: the hooks' names, parameters, private/job flags and private models
    # are the same at TS-25.10.6 :328-498, TS-26.0.0-BETA.3 :329-498, master :338-507.
    plugin = sys.modules["truenas_vmware_coord.vmware_coord"]
    assert plugin.TAKEOVER_PROBLEMS == []
    assert "VMwareCoordTakeover" not in [a.klass.name for a in mw.alert.list()]
    # 26.0's sa.JSON needs its type (TS-26.0.0-BETA.3 sqlalchemy.py:76): the tables exist.
    tables = {r[0] for r in mw.datastore.execute("SELECT name FROM sqlite_master").fetchall()}
    assert {f"vmware_coord_{t}" for t in ("policy", "config", "endpoint", "state")} <= tables


def test_alert_classes_take_the_shape_of_the_release(mw: Middleware) -> None:
    classes = sys.modules["truenas_vmware_coord.truenas.middlewared.alert_classes"].CLASSES
    names = sorted(c.__name__ for c in classes.values())
    if mw.release == "27":
        # master alert/base.py:105-116: classes named *Alert with an AlertClassConfig.
        assert all(n.endswith("Alert") and not n.endswith("AlertClass") for n in names)
        assert all(c.config.title for c in classes.values())
    else:
        # TS-25.10.6 alert/base.py:26-37 (TS-26.0.0-BETA.3 :29-40): names end in AlertClass.
        assert all(n.endswith("AlertClass") for n in names)


def test_alerts_are_raised_and_cleared_the_releases_way(mw: Middleware) -> None:
    # 27's alert.oneshot_create takes one alert instance (master plugins/alert/__init__.py:134-149),
    # 25.10's and 26.0's a class name and args (TS-25.10.6 plugins/alert.py:927-965).
    runtime = mw.services["vmware_coord"].runtime
    from truenas_vmware_coord.truenas import alerts
    args = {"key": "leftovers", "count": 2, "details": "x, y"}
    runtime.apply([alerts.AlertOp("create", alerts.LEFTOVERS, args)])
    raised = [a for a in mw.alert.list() if a.klass.name == "VMwareCoordLeftovers"]
    assert len(raised) == 1 and "2 VMware snapshot(s)" in raised[0].formatted
    runtime.apply([alerts.AlertOp("delete", alerts.LEFTOVERS, "leftovers")])
    assert [a for a in mw.alert.list() if a.klass.name == "VMwareCoordLeftovers"] == []


def test_the_periodic_begin_reads_a_task_dict_or_a_task_model(mw: Middleware) -> None:
    # TS-26.0.0-BETA.3 plugins/snapshot.py:60 (generic = True) and service/crud_service.py:174-179:
    # internal callers of pool.snapshottask.query get a PeriodicSnapshotTaskEntry model.
    mw.snapshot_tasks.append({"id": 7, "dataset": "tank/vm", "recursive": True, "exclude": ["tank/vm/tmp"],
                              "naming_schema": "auto-%Y%m%d-%H%M", "allow_empty": False})
    found = mw.call_sync("pool.snapshottask.query", [["id", "=", 7]], {"get": True})
    assert isinstance(found, dict) == (mw.release == "25.10")
    harness.add_mapping(mw, "vc.example.com", "svc", "secret", "ds1", "tank/vm")
    scope = mw.call_sync("vmware.periodic_snapshot_task_begin", 7)
    assert scope == {"dataset": "tank/vm", "recursive": True, "exclude": ["tank/vm/tmp"], "task_id": 7,
                     "naming_schema": "auto-%Y%m%d-%H%M", "allow_empty": False}


def test_snapshot_services_of_the_release(mw: Middleware) -> None:
    # zfs.snapshot.* is gone from 26.0 on (TS-26.0.0-BETA.3: plugins/zfs_/snapshot.py deleted by
    # 586b22053c), and pool.snapshot.update sets nothing (plugins/pool_/snapshot.py:366-370):
    # the plugin creates through pool.snapshot.create and labels through the zfs command.
    assert ("zfs.snapshot" in mw.services) == (mw.release == "25.10")
    assert hasattr(mw.services["pool.snapshot"], "create")
