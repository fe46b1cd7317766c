"""Fixtures of the real-framework suite: a real middlewared, the simulator, zfs-fuse.

Everything here runs inside the namespaces of ``tools/truenas_real/session.py``, which
describes what it started in the JSON file named by ``TRUENAS_REAL``. The tests talk to
middlewared only through the real ``truenas_api_client`` (root over the unix socket, as
``midclt`` and zettarepl's observer do). Observations the double must match (error shapes,
results) are collected in ``tests/artifacts/real_truenas/observed.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from truenas_api_client import Client, ClientException, ValidationErrors

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "real_truenas"
OBSERVED: dict[str, Any] = {}


def _info() -> dict[str, Any]:
    path = os.environ.get("TRUENAS_REAL")
    if not path:
        pytest.fail("run through `./run test-truenas MIDDLEWARE_SRC ...` (TRUENAS_REAL is not set)")
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def info() -> dict[str, Any]:
    return _info()


class Hidden(str):
    """A password that reprs as <hidden>: pytest prints call arguments in tracebacks (junit.xml)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<hidden>'"


def keep_secret(kind: str, value: str) -> Hidden:
    """Tell the session that no artifact may hold ``value`` (an API key, a session token).

    tools/truenas_real/session.py reads ``TRUENAS_REAL_SECRETS`` at the end and refuses any log, and
    empties any artifact, that holds one, as it does for the simulator's password.
    """
    path = os.environ.get("TRUENAS_REAL_SECRETS")
    if not path:
        pytest.fail("TRUENAS_REAL_SECRETS is not set: run through `./run test-truenas`")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as secrets:
        secrets.write(f"{kind}\t{value}\n")
    return Hidden(value)


@dataclasses.dataclass(frozen=True)
class Sim:
    """The simulator as tools.rig.inventory expects it (host, port, login, pinned TLS)."""

    host: str
    port: int
    username: str
    password: str
    sha256: str

    def ssl_context(self) -> ssl.SSLContext:
        from tools.rig.vcsim import pinned_context

        return pinned_context(self.host, self.port, self.sha256)


@pytest.fixture(scope="session")
def sim(info: dict[str, Any]) -> Sim:
    v = info["vcsim"]
    return Sim(
        v["host"], v["port"], v["username"], Hidden(os.environ["TRUENAS_REAL_VCSIM_PASSWORD"]), v["sha256"]
    )


class Api:
    """The real client: ``call`` raises what truenas_api_client raises; ``error`` records it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(self, method: str, *params: Any, job: bool = False, timeout: float = 120) -> Any:
        return self.client.call(method, *params, job=job, timeout=timeout)

    def error(self, method: str, *params: Any, job: bool = False) -> dict[str, Any]:
        """Call expecting an error; the error's shape as the client hands it over."""
        try:
            result = self.call(method, *params, job=job)
        except ValidationErrors as exc:
            return {
                "type": "ValidationErrors",
                "errno": exc.errno,
                "str": str(exc),
                "errors": [[e.attribute, e.errmsg, e.errcode] for e in exc.errors],
            }
        except ClientException as exc:
            return {
                "type": type(exc).__name__,
                "errno": exc.errno,
                "error": exc.error,
                "extra": exc.extra,
                "trace_class": (exc.trace or {}).get("class"),
            }
        raise AssertionError(f"{method} succeeded: {result!r}")


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    with Client(private_methods=True, call_timeout=120) as client:
        yield Api(client)


@pytest.fixture(scope="session")
def observe() -> Iterator[Callable[[str, Any], None]]:
    def record(key: str, value: Any) -> None:
        OBSERVED[key] = value

    yield record
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "observed.json").write_text(json.dumps(OBSERVED, indent=1, sort_keys=True, default=str))


def zfs(*args: str) -> str:
    """The zfs CLI of this namespace's zfs-fuse (the pool middlewared sees)."""
    return subprocess.run(["zfs", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def zfs_get(name: str, prop: str) -> tuple[str, str]:
    """(value, source) of a property, as `zfs get` reports them."""
    value, source = zfs("get", "-H", "-o", "value,source", prop, name).strip().split("\t")
    return value, source


def wait_for(predicate: Callable[[], Any], timeout: float = 60, every: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(every)


@contextlib.contextmanager
def vsphere(sim: Sim) -> Iterator[Any]:
    from tools.rig import inventory

    si = inventory.connect_to(sim)  # type: ignore[arg-type] - Sim has what it reads
    try:
        yield si
    finally:
        si.content.sessionManager.Logout()


def vmware_snapshots(sim: Sim) -> dict[str, list[str]]:
    from tools.rig import inventory

    with vsphere(sim) as si:
        return {vm.name: inventory.snapshot_names(vm) for vm in inventory.vms(si)}


@pytest.fixture(scope="session")
def vms(sim: Sim) -> dict[str, list[str]]:
    """VMs on the NFS datastores: two with Tools on nfs01, one on nfs02 whose snapshots fail."""
    from tools.rig import inventory

    with vsphere(sim) as si:
        for name in ("app-01", "app-02"):
            inventory.create_vm(si, name, "nfs01")
        broken = inventory.create_vm(si, "db-01", "nfs02")
        for method in ("CreateSnapshot_Task", "CreateSnapshotEx_Task"):
            inventory.inject_fault(broken, method, "InvalidState")
        inventory.create_vm(si, "web-01", "nfs02")
    return {"nfs01": ["app-01", "app-02"], "nfs02": ["db-01", "web-01"]}


@pytest.fixture(scope="session")
def mapping(
    api: Api, sim: Sim, info: dict[str, Any], vms: dict[str, list[str]], observe: Callable[[str, Any], None]
) -> dict[str, Any]:
    """A stock VMware-Snapshots mapping created through the stock vmware.create, pinned for the plugin."""
    row = api.call(
        "vmware.create",
        {
            "hostname": sim.host,
            "username": sim.username,
            "password": sim.password,
            "datastore": "nfs01",
            "filesystem": info["datastores"]["nfs01"]["dataset"],
        },
    )
    observe("vmware.create result keys", sorted(row))
    observe(
        "vmware.create result password",
        "<the password>" if row.get("password") == sim.password else row.get("password"),
    )
    endpoint = api.call(
        "vmware_coord.endpoint.create", {"hostname": sim.host, "tls": {"sha256_fingerprint": sim.sha256}}
    )
    return {"row": row, "endpoint": endpoint}
