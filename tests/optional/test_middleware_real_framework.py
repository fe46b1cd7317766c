"""Optional: import the plugin with the REAL middlewared framework of TrueNAS 25.10.

Enabled by pointing ``TRUENAS_MIDDLEWARE_SRC`` at ``src/middlewared`` of a truenas/middleware
checkout at a TS-25.10.x tag, in a Python 3.11 environment that can import
``middlewared.service``, ``middlewared.api.current``, ``middlewared.sqlalchemy``,
``middlewared.alert.base`` and ``middlewared.plugins.vmware`` (see
shared/design/truenas-middlewared.md, section 5: pydantic<2.11, truenas_api_client and zettarepl
from their tags, stubs for wbclient/cryptit/samba/gssapi/tdb/libzfs). It runs in a child
process so the real ``middlewared`` never meets the double. CI does not set the variable.

    TRUENAS_MIDDLEWARE_SRC=/path/to/middleware/src/middlewared \
    TRUENAS_PYTHON=/path/to/venv/bin/python \
        .venv/bin/python -m pytest tests/optional/test_middleware_real_framework.py

``TRUENAS_PYTHON`` (default: this interpreter) must have truenas_vmware_coord and the
framework's PyPI dependencies installed (pydantic<2.11, SQLAlchemy<2, pyvmomi, jsonschema,
websocket-client, cryptography, pytz, croniter, dns-lexicon, email-validator, isodate,
html2text, PyYAML, python-dateutil, PyJWT, ...) plus truenas_api_client and zettarepl from
their TS-25.10 tags on PYTHONPATH; the modules that wrap C libraries of the appliance
(``TRUENAS_STUB_MODULES``, default below) are stubbed.
"""

from __future__ import annotations

import os
import subprocess
import sys

SRC = os.environ.get("TRUENAS_MIDDLEWARE_SRC")
PYTHON = os.environ.get("TRUENAS_PYTHON", sys.executable)
STUBS = os.environ.get("TRUENAS_STUB_MODULES", "wbclient cryptit samba gssapi tdb libzfs ldap Cryptodome")

CHECK = r"""
import importlib.abc, importlib.machinery, inspect, sys, types

class Stub(types.ModuleType):
    __path__ = []
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name.isupper():   # constants, e.g. enum values taken from a C library
            value = abs(hash((self.__name__, name))) % 100000
        else:                # classes and functions: callable with anything
            value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value

class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in sys.argv[1].split():
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return Stub(spec.name)
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, StubFinder())
from middlewared.service import Service, ABSTRACT_SERVICES
from middlewared.utils.plugins import load_classes
from middlewared.plugins import vmware as stock
import truenas_vmware_coord.vmware_coord as plugin

assert plugin.TAKEOVER_PROBLEMS == [], plugin.TAKEOVER_PROBLEMS
names = sorted(c._config.namespace for c in load_classes(plugin, Service, ABSTRACT_SERVICES))
assert names == ["vmware_coord", "vmware_coord.config", "vmware_coord.endpoint", "vmware_coord.policy"], names
assert plugin.VMwareCoordPolicyService.query.new_style_returns.__module__ == "middlewared.api.vmware_coord"
for name, (params, is_job) in plugin.HOOKS.items():
    fn = stock.VMWareService.__dict__[name]
    assert fn._vmware_coord and fn._private, name
    assert tuple(inspect.signature(fn).parameters) == params, name
    assert hasattr(fn, "_job") == is_job, name

class Recorder:
    calls = []
    def call_sync(self, name, *args):
        self.calls.append((name, args))

service = object.__new__(stock.VMWareService)
service.middleware = Recorder()
stock.VMWareService.periodic_snapshot_task_proceed(service, object(), {"dataset": "tank/vm"})
stock.VMWareService.snapshot_begin(service, "tank/vm", True)
assert Recorder.calls == [("vmware_coord.hook_begin", ({"dataset": "tank/vm"},)),
                          ("vmware_coord.hook_manual_begin", ("tank/vm", True))], Recorder.calls
print("ok")
"""


def test_plugin_registers_and_takes_over_with_the_real_framework() -> None:
    # Not part of the suite CI runs (tests/optional is not collected unless named): run on
    # purpose, it fails rather than skips when the checkout is missing.
    assert SRC, "set TRUENAS_MIDDLEWARE_SRC to src/middlewared of a TrueNAS 25.10 checkout"
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([PYTHON, "-c", CHECK, STUBS], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=path), timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-4000:]
