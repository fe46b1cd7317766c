"""Start and stop a double middlewared with the stock vmware plugin and this plugin loaded.

``start`` does what a middlewared boot does, in its order: import the plugin modules (the
hook takeover happens here), instantiate the services, run every ``setup()``. The stock
tables exist already (TrueNAS's migrations made them); the plugin creates its own.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from . import install, uninstall
from .middleware import Middleware


def start(workdir: Path, stock_shape: str = "25.10", release: str = "25.10",
          before_setup: Callable[[Middleware], None] | None = None, vm_shape: str = "25.10",
          **kwargs: Any) -> tuple[Middleware, ModuleType]:
    """``before_setup``: what the NAS held before this boot (e.g. mappings that existed
    before the plugin was installed)."""
    uninstall()
    install(stock_shape, release, vm_shape)
    stock = sys.modules["middlewared.plugins.vmware"]
    stock_vm = sys.modules["middlewared.plugins.vm.vm_lifecycle"]
    plugin = importlib.import_module("truenas_vmware_coord.vmware_coord")
    mw = Middleware(workdir, release=release, **kwargs)
    mw.datastore.create_tables("storage.vmwareplugin")
    mw.load_plugins(stock, stock_vm, plugin)
    if before_setup is not None:
        before_setup(mw)
    mw.run_setup()
    return mw, plugin


def wait_jobs(mw: Middleware, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for job in list(mw.jobs):
        job.wait_sync(max(0.1, deadline - time.monotonic()))


def stop(mw: Middleware) -> None:
    wait_jobs(mw)
    service = mw.services.get("vmware_coord")
    if service is not None:
        service.runtime.close()
    mw.stop()
    uninstall()


def add_mapping(mw: Middleware, hostname: str, username: str, password: str, datastore: str,
                dataset: str) -> int:
    """A stock "VMware-Snapshots" row, as the stock UI stores it."""
    return mw.datastore.insert("storage.vmwareplugin", {
        "hostname": hostname, "username": username, "password": password, "filesystem": dataset,
        "datastore": datastore, "state": {"state": "PENDING"}})
