"""Certificates of hosts mapped before the plugin was installed: trusted on first use, then
pinned; a changed certificate refused with the one call that re-pins it; hosts mapped after
the install never trusted without an explicit pin. Against real simulators (self-signed
certificates, as most vCenters have) in the middlewared double."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.middleware_double import harness
from tests.middleware_double.middleware import Middleware
from tests.middleware_double.zettarepl import Observer, run_task
from tools.rig import inventory

NAS = "nas.test.local"


def _world(start_vcsim, zfs_pool, tag: str, port: int | None = None):
    sim = start_vcsim("-vm", "0", *(["-l", f"127.0.0.1:{port}"] if port else []))
    si = inventory.connect_to(sim)
    dataset = zfs_pool.create_dataset(f"trust{os.getpid()}/{tag}")
    datastore = inventory.add_nfs_datastore(si, str(zfs_pool.dataset_mountpoint(dataset)), NAS)
    inventory.create_vm(si, f"{datastore}-app", datastore)
    return sim, si, dataset, datastore


def _task(mw: Middleware, dataset: str) -> dict:
    row = {"id": len(mw.snapshot_tasks) + 1, "dataset": dataset, "recursive": False, "exclude": [],
           "naming_schema": f"t{len(mw.snapshot_tasks)}-%Y%m%d-%H%M%S", "allow_empty": True}
    mw.snapshot_tasks.append(row)
    return row


def _port_only(mw: Middleware, sim) -> None:
    created = mw.midclt("vmware_coord.endpoint.create", json.dumps({"hostname": sim.host, "port": sim.port,
                                                                    "connect_timeout_seconds": 5}))
    assert "result" in created, created


def _alerts(mw: Middleware, name: str) -> list:
    return [a for a in mw.alert.list() if a.klass.name == name]


def test_a_host_mapped_before_the_install_is_pinned_on_first_use_and_a_change_refused(
        start_vcsim, zfs_pool, tmp_path: Path) -> None:
    sim, si, dataset, datastore = _world(start_vcsim, zfs_pool, "before")
    mw, _ = harness.start(tmp_path / "mw", before_setup=lambda mw: harness.add_mapping(
        mw, sim.host, sim.username, sim.password, datastore, dataset))
    try:
        harness.wait_jobs(mw)
        # The simulator is not on 443: its port is set, as a port alone (no trust said).
        _port_only(mw, sim)
        tick = run_task(Observer(mw), _task(mw, dataset))
        assert tick.options.properties == {"freenas:vmsynced": "Y"}     # coordinated, not degraded
        [endpoint] = mw.midclt("vmware_coord.endpoint.query")["result"]
        assert endpoint["tls"]["sha256_fingerprint"] == sim.sha256
        [notice] = _alerts(mw, "VMwareCoordTrust")
        assert sim.sha256 in notice.formatted and "vmware_coord.endpoint" in notice.formatted

        # The vCenter comes back with another certificate (here: a new simulator, same port).
        port = sim.port
        sim.stop()
        sim2, _si2, _ds2, datastore2 = _world(start_vcsim, zfs_pool, "after-change", port)
        assert datastore2 and sim2.sha256 != sim.sha256
        tick = run_task(Observer(mw), _task(mw, dataset))
        assert tick.options.properties == {}                             # refused: crash-consistent
        [changed] = _alerts(mw, "VMwareCoordEndpoint")
        assert sim2.sha256 in changed.formatted and "vmware_coord.endpoint.pin" in changed.formatted
        wrong = mw.midclt("vmware_coord.endpoint.pin", json.dumps(sim.host), json.dumps(sim.sha256),
                          str(port))
        assert "presents" in wrong["error"]["data"]["reason"]                # the old pin is refused
        pinned = mw.midclt("vmware_coord.endpoint.pin", json.dumps(sim.host), json.dumps(sim2.sha256),
                           str(port))["result"]
        assert pinned["tls"]["sha256_fingerprint"] == sim2.sha256
    finally:
        harness.stop(mw)


def test_a_host_mapped_after_the_install_needs_an_explicit_pin(start_vcsim, zfs_pool, tmp_path: Path) -> None:
    sim, _si, dataset, datastore = _world(start_vcsim, zfs_pool, "later")
    mw, _ = harness.start(tmp_path / "mw")
    try:
        harness.wait_jobs(mw)
        harness.add_mapping(mw, sim.host, sim.username, sim.password, datastore, dataset)
        _port_only(mw, sim)
        tick = run_task(Observer(mw), _task(mw, dataset))
        assert tick.options.properties == {}
        [endpoint] = mw.midclt("vmware_coord.endpoint.query")["result"]
        assert endpoint["tls"].get("sha256_fingerprint") is None              # nothing pinned silently
        [failed] = _alerts(mw, "VMwareCoordEndpoint")
        assert "certificate" in failed.formatted and "vmware_coord.endpoint.fingerprint" in failed.formatted
        assert _alerts(mw, "VMwareCoordTrust") == []
    finally:
        harness.stop(mw)
