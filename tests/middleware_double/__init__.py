"""A documented double of the part of TrueNAS 25.10 middlewared that the plugin uses.

It lives under ``tests/`` and is never importable as ``middlewared``: ``install()`` puts
its modules into ``sys.modules`` under the names the plugin imports, and ``uninstall()``
takes them out again (the fixtures in tests/ do both). Each module says which file of
truenas/middleware at TS-25.10.6 it mirrors:

| name in sys.modules              | double                         |
|----------------------------------|--------------------------------|
| middlewared.service              | framework.py                   |
| middlewared.api, .api.base       | framework.py                   |
| middlewared.sqlalchemy           | datastore.py                   |
| middlewared.alert.base           | alerts.py (27: alerts_typed.py) |
| middlewared.plugins.vmware       | stock_vmware.py (shape only)   |
| middlewared.plugins.vm.vm_lifecycle | stock_vm.py (shape only)    |
| (the running daemon)             | middleware.py                  |
| (zettarepl's observer)           | zettarepl.py                   |

``release`` picks the shapes of a TrueNAS release, each read from its source (the files
say where): "25.10" (TS-25.10.6), "26.0" (TS-26.0.0-BETA.3: ``sa.JSON`` needs its type,
``pool.snapshottask`` returns models, ``zfs.snapshot.*`` is gone and
``pool.snapshot.update`` sets nothing) and "27" (master: 26.0's, plus typed dataclass
alerts).
"""

from __future__ import annotations

import sys
import types

NAMES = ("middlewared", "middlewared.service", "middlewared.service_exception", "middlewared.api",
         "middlewared.api.base", "middlewared.sqlalchemy", "middlewared.alert", "middlewared.alert.base",
         "middlewared.plugins", "middlewared.plugins.vmware", "middlewared.plugins.vm",
         "middlewared.plugins.vm.vm_lifecycle")


RELEASES = ("25.10", "26.0", "27")


def install(stock_shape: str = "25.10", release: str = "25.10",
            vm_shape: str = "25.10") -> dict[str, types.ModuleType]:
    """Register the double's modules under middlewared's names; returns them by name."""
    import importlib

    from . import alerts, alerts_typed, datastore, framework, stock_vm, stock_vmware

    # A fresh declarative registry and alert registry per install: the plugin module is
    # imported anew each time, as in a new middlewared process.
    datastore = importlib.reload(datastore)
    alerts = importlib.reload(alerts)
    alerts_typed = importlib.reload(alerts_typed)
    sqlalchemy_attrs = {"JSON": datastore.JSONNeedingItsType} if release != "25.10" else {}

    def module(name: str, source: types.ModuleType | None = None, **attrs: object) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__path__ = []  # a package, so "middlewared.api.x" can be added below it
        if source is not None:
            mod.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("__")})
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    mods = {
        "middlewared": module("middlewared"),
        "middlewared.service": module("middlewared.service", framework),
        "middlewared.service_exception": module("middlewared.service_exception", framework),
        "middlewared.api": module("middlewared.api", api_method=framework.api_method),
        "middlewared.api.base": module("middlewared.api.base", BaseModel=framework.BaseModel),
        "middlewared.sqlalchemy": module("middlewared.sqlalchemy", datastore, **sqlalchemy_attrs),
        "middlewared.alert": module("middlewared.alert"),
        "middlewared.alert.base": module("middlewared.alert.base",
                                         alerts_typed if release == "27" else alerts),
        "middlewared.plugins": module("middlewared.plugins"),
    }
    mods["middlewared.plugins.vmware"] = stock_vmware.build(stock_shape)
    sys.modules["middlewared.plugins.vmware"] = mods["middlewared.plugins.vmware"]
    mods["middlewared.plugins.vm"] = module("middlewared.plugins.vm")
    mods["middlewared.plugins.vm.vm_lifecycle"] = stock_vm.build(vm_shape)
    sys.modules["middlewared.plugins.vm.vm_lifecycle"] = mods["middlewared.plugins.vm.vm_lifecycle"]
    mods["middlewared.plugins.vm"].vm_lifecycle = mods["middlewared.plugins.vm.vm_lifecycle"]
    return mods


def uninstall() -> None:
    for name in [n for n in sys.modules if n == "middlewared" or n.startswith("middlewared.")]:
        del sys.modules[name]
    # The plugin's middlewared modules are imported anew by the next "process".
    for name in [n for n in sys.modules if n == "truenas_vmware_coord.vmware_coord"
                 or n.startswith("truenas_vmware_coord.truenas.middlewared")]:
        del sys.modules[name]
