"""Installable package for truenas-vmware-coord.

The source folder is ``plugin/`` (fixed by the design card), installed under the specific
import name ``truenas_vmware_coord`` so it cannot collide with other packages' ``plugin``.
"""

from setuptools import setup

PACKAGES = [
    "truenas_vmware_coord",
    "truenas_vmware_coord.app",
    "truenas_vmware_coord.cli",
    "truenas_vmware_coord.domain",
    "truenas_vmware_coord.domain.strategies",
    "truenas_vmware_coord.engine",
    "truenas_vmware_coord.libvirt",
    "truenas_vmware_coord.truenas",
    "truenas_vmware_coord.truenas.middlewared",
    "truenas_vmware_coord.schemas",
    "truenas_vmware_coord.store",
    "truenas_vmware_coord.vsphere",
    "truenas_vmware_coord.zfs",
    "truenas_vmware_coord.ui",
]

setup(
    name="truenas-vmware-coord",
    version="0.1.0",
    description="VM-consistent ZFS snapshots of VMware datastores for TrueNAS middlewared",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir={
        pkg: "plugin" + pkg[len("truenas_vmware_coord"):].replace(".", "/") for pkg in PACKAGES
    } | {"truenas_vmware_coord.ui": "ui_extension"},   # the design card keeps the page at the top
    package_data={"truenas_vmware_coord.schemas": ["*.json"],
                  "truenas_vmware_coord.ui": ["*.html", "*.css", "*.js", "generated/*.json"]},
    install_requires=[
        # TrueNAS 25.10 ships Debian bookworm's pyvmomi 6.7.1 and jsonschema 4.10.3, which middlewared
        # has imported before the plugin loads: both are supported (tested in CI, see .ci/run)
        "pyvmomi>=6.7.1",
        "jsonschema>=4.10",
        # policies' regular expressions: matched in linear time, so no pattern can hang a run
        "google-re2>=1.1",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "ruff>=0.4",
            # the middlewared double uses the libraries middlewared 25.10 itself uses
            "pydantic>=2.9,<2.11",
            "SQLAlchemy>=1.4.46,<2",
            # the web UI extension's end-to-end tests (Debian's chromium, not a downloaded one)
            "aiohttp>=3.9",
            "playwright>=1.40",
            # the benchmark's smoke test draws its plot too
            "matplotlib>=3.7",
            # libvirt guests against a real QEMU (builds against Debian's libvirt-dev)
            "libvirt-python>=9.0",
        ],
        # libvirt guests on a ZFS host that is not TrueNAS (TrueNAS's own Python has libvirt)
        "libvirt": ["libvirt-python>=9.0"],
        "bench": ["matplotlib>=3.7"],
    },
    entry_points={"console_scripts": [
        "vmware-coord=truenas_vmware_coord.cli.main:main",
        # zrepl runs a hook as one executable without arguments, for both edges
        "vmware-coord-hook=truenas_vmware_coord.cli.main:hook_main",
    ]},
)
