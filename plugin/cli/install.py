"""``vmware-coord install-plugin`` / ``uninstall-plugin``: the loader in middlewared's plugins/.

middlewared discovers plugins only in its own ``plugins/`` directory (there is no overlay
directory since 22.12). The loader placed there is small: it makes this package importable,
imports the entry module (services, alert classes, hook takeover) and wraps ``setup`` so a
broken installation logs an error instead of stopping middlewared. On SCALE the root file
system is read-only (developer mode makes it writable) and every upgrade replaces it, which
removes the loader: run ``install-plugin`` again after an upgrade.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import truenas_vmware_coord

from ..truenas import snapshots
from ..zfs.shell import LocalShell, Shell, ShellError

LOADER_NAME = "vmware_coord.py"
MARKER = "# truenas-vmware-coord loader"
LOADER = '''{marker} (written by `vmware-coord install-plugin`; removed by `uninstall-plugin`)
"""Loads truenas-vmware-coord from {site}; never stops middlewared from starting."""
import logging
import sys

if {site!r} not in sys.path:
    sys.path.append({site!r})

try:
    from truenas_vmware_coord.vmware_coord import *  # noqa: F401,F403 - services and alert classes
    from truenas_vmware_coord.vmware_coord import setup as _setup
except Exception:
    logging.getLogger(__name__).error("truenas-vmware-coord could not be loaded", exc_info=True)
    _setup = None


async def setup(middleware):
    if _setup is None:
        return
    try:
        await _setup(middleware)
    except Exception:
        logging.getLogger(__name__).error("truenas-vmware-coord setup failed", exc_info=True)
'''


def default_plugins_dir() -> Path:
    spec = importlib.util.find_spec("middlewared")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("middlewared is not installed here; give --plugins-dir")
    return Path(spec.origin).parent / "plugins"


def default_site() -> Path:
    """The directory this package is imported from (where the loader must look)."""
    return Path(truenas_vmware_coord.__file__).resolve().parent.parent


def install(plugins_dir: Path, site: Path) -> Path:
    target = plugins_dir / LOADER_NAME
    if not plugins_dir.is_dir():
        raise FileNotFoundError(f"{plugins_dir} is not a directory")
    if target.exists() and MARKER not in target.read_text(errors="replace"):
        raise FileExistsError(f"{target} exists and is not this product's loader; not overwriting it")
    target.write_text(LOADER.format(marker=MARKER, site=str(site)))
    return target


def uninstall(plugins_dir: Path) -> Path | None:
    target = plugins_dir / LOADER_NAME
    if not target.exists():
        return None
    if MARKER not in target.read_text(errors="replace"):
        raise FileExistsError(f"{target} is not this product's loader; not removing it")
    target.unlink()
    return target


def stock_flags(shell: Shell) -> list[str]:
    """Datasets on this NAS that carry freenas:vmsynced themselves (stock's manual snapshots
    with VMware sync put it there); [] where ZFS cannot be asked."""
    try:
        pools = shell.run(["zpool", "list", "-H", "-o", "name"]).split()
        return snapshots.dataset_flags(shell, pools)
    except (ShellError, OSError):
        return []


def main(action: str, plugins_dir: str | None, site: str | None, shell: Shell | None = None) -> int:
    directory = Path(plugins_dir) if plugins_dir else default_plugins_dir()
    if action == "install-plugin":
        path = install(directory, Path(site) if site else default_site())
        print(f"installed {path}\nrestart middlewared to load it: systemctl restart middlewared")
        flagged = stock_flags(shell or LocalShell(timeout=30))
        if flagged:
            print(f"{len(flagged)} dataset(s) carry freenas:vmsynced themselves, left by stock TrueNAS's "
                  f"manual snapshots with VMware sync: {', '.join(flagged)}.\nEvery later snapshot of them "
                  "inherits that value, true or not. Once middlewared runs the plugin:\n"
                  "    midclt call vmware_coord.clear_dataset_flags")
    else:
        removed = uninstall(directory)
        print(f"removed {removed}; restart middlewared" if removed else f"no loader in {directory}")
    return 0
