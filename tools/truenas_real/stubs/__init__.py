"""Stand-ins for the modules of TrueNAS that wrap appliance C libraries (or are TrueNAS-only
packages that exist neither on PyPI nor as Debian packages), so middlewared can import and run
here.

This folder is copied into the framework venv as the package ``truenas_real_stubs``; a
``.pth`` file there calls :func:`install` in every interpreter of that venv (middlewared, its
process-pool workers and the zettarepl child, all started with multiprocessing's *spawn*).
:func:`install` puts a finder first on ``sys.meta_path`` that serves each name in
:data:`STUBS` (and any submodule of it): a module file of this package with that name when
there is one (``libzfs.py``: a working double over the zfs CLI; ``systemd``: notify as a
no-op), otherwise a permissive placeholder module (:mod:`._auto`) whose attributes are
classes and constants that accept anything. Each stub's docstring names the real module.

Only what is in :data:`STUBS` is stubbed: every other import of middlewared gets the real
package from PyPI (``pins.py``), so a missing pin fails loudly instead of being papered over.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# name -> the real module it stands in for (and why it cannot be the real one here)
STUBS: dict[str, str] = {
    # C-library wrappers of the appliance
    "libzfs": "py-libzfs (truenas/py-libzfs, Cython over OpenZFS libzfs): a double over the zfs CLI",
    "truenas_pylibzfs": "truenas_pylibzfs (truenas/truenas_pylibzfs, C extension over OpenZFS libzfs)",
    "samba": "Samba's Python bindings (truenas/samba, C extensions)",
    "tdb": "tdb (Samba's trivial database, C extension)",
    "wbclient": "wbclient (truenas/py-wbclient: libwbclient, Samba winbind client)",
    "gssapi": "python-gssapi (MIT Kerberos libgssapi_krb5)",
    "ldap": "python-ldap (OpenLDAP libldap)",
    "libvirt": "libvirt-python (libvirt)",
    "libsgio": "truenas libsgio (SCSI generic ioctl C extension)",
    "libsg3": "truenas libsg3 (sg3_utils C extension)",
    "ixhardware": "ixhardware (iXsystems hardware detection over dmidecode/SMBIOS)",
    "pysss_murmur": "pysss_murmur (SSSD, C)",
    "pysss_nss_idmap": "pysss_nss_idmap (SSSD, C)",
    "pystemd": "pystemd (Cython over libsystemd's sd-bus)",
    "systemd": "python3-systemd (C extension over libsystemd): notify and journal as no-ops",
    "cryptit": "truenas cryptit (C extension over crypt(3))",
    "fenced": "truenas fenced (HA fencing daemon's client, SCSI reservations)",
    "truenas_verify": "truenas_verify (root file system verification of the appliance image)",
    # TrueNAS-only Python packages of the appliance image (not on PyPI, not in Debian)
    "licenselib": "truenas licenselib (appliance licence parsing)",
    "ixdiagnose": "ixdiagnose (appliance debug collector)",
    "truenas_crypto_utils": "truenas_crypto_utils (appliance certificate helpers)",
    "truenas_connect_utils": "truenas_connect_utils (TrueNAS Connect client)",
    "truenas_acme_utils": "truenas_acme_utils (appliance ACME helpers)",
    "apps_validation": "truenas apps_validation (apps catalog validation)",
    "apps_schema": "truenas apps_schema (apps catalog schema)",
    "apps_ci": "truenas apps_ci (apps catalog CI helpers)",
    "catalog_reader": "truenas catalog_reader (apps catalog reader)",
}

HERE = Path(__file__).resolve().parent


class _StubFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        top = name.split(".")[0]
        if top not in STUBS:
            return None
        # A real file of this package for that name wins (libzfs.py, systemd/...).
        relative = name.split(".")
        for candidate in (
            HERE.joinpath(*relative).with_suffix(".py"),
            HERE.joinpath(*relative, "__init__.py"),
        ):
            if candidate.is_file():
                is_pkg = candidate.name == "__init__.py"
                return importlib.util.spec_from_file_location(
                    name, candidate, submodule_search_locations=[str(candidate.parent)] if is_pkg else None
                )
        return importlib.machinery.ModuleSpec(name, _AutoLoader(STUBS[top]), is_package=True)


class _AutoLoader(importlib.abc.Loader):
    def __init__(self, stands_for: str) -> None:
        self.stands_for = stands_for

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        from ._auto import AutoModule

        return AutoModule(spec.name, f"Placeholder standing in for {self.stands_for}.")

    def exec_module(self, module: ModuleType) -> None:
        module.__path__ = []  # type: ignore[attr-defined] - a package: submodules resolve here too


def install() -> None:
    """Put the finder first on sys.meta_path (idempotent)."""
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StubFinder())


def manifest() -> dict[str, str]:
    """Which stub stands in for what, for the version manifest."""
    return dict(STUBS)
