"""TrueNAS's own VMs as libvirt guests of this plugin, and which of them it holds.

TrueNAS runs its VMs in a libvirtd of its own on ``/run/truenas_libvirt/libvirt-sock``
(TS-25.10.6 ``plugins/vm/utils.py:11``; TS-26.0.0-BETA.3 ``apps/webshell_app.py:75``, through
``truenas_pylibvirt``), and names each domain ``<vm id>_<vm name>`` (TS-25.10.6
``plugins/vm/supervisor/supervisor.py:28``). Around a periodic snapshot TrueNAS pauses the
running VMs of the dataset itself: zettarepl's observer asks ``vm.periodic_snapshot_task_begin``
which VMs have a disk there and hands them to ``vm.suspend_vms`` after the VMware hook, then
to ``vm.resume_suspended_vms`` after the snapshot (TS-25.10.6 ``plugins/zettarepl.py:204-226``;
``plugins/vm/attachments.py:32-67`` picks every running VM, whatever its
``suspend_on_snapshot``, which 26.0 then checks in ``suspend_vms``: TS-26.0.0-BETA.3
``plugins/vm/vm_lifecycle.py:122-144``); a manual snapshot with ``suspend_vms`` does the same
(TS-25.10.6 ``plugins/zfs_/snapshot.py:179-206``). The plugin coordinates those guests
itself, by policy (fsfreeze by default), so the stock pause is told to leave alone every VM a
live run of the plugin holds: a guest is never both frozen and paused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..domain.model import Provider
from ..engine.journal import Journal
from ..libvirt.settings import LibvirtSettings

SOCKET = "/run/truenas_libvirt/libvirt-sock"
ENDPOINT_NAME = "truenas"
_VM_ID = re.compile(r"^(\d+)_")


def local_settings() -> LibvirtSettings | None:
    """TrueNAS's libvirt, when its daemon runs here (the VM service is up) and the binding
    imports (TrueNAS's own Python has it); else None, and the stock pause stays as it is."""
    if not os.path.exists(SOCKET):
        return None
    try:
        import libvirt  # noqa: F401 - only whether it imports
    except ImportError:
        return None
    return LibvirtSettings(ENDPOINT_NAME, f"qemu+unix:///system?socket={SOCKET}")


def vm_id(domain_name: str) -> int | None:
    """The TrueNAS VM id of a domain named ``<id>_<name>``."""
    found = _VM_ID.match(domain_name)
    return int(found.group(1)) if found else None


def held_vm_ids(journal: Journal, endpoint_id: str) -> set[int]:
    """The VMs that a run not ended yet coordinates (whatever it did to them: froze,
    paused, or left alone by policy): the stock pause must not touch them."""
    held = set()
    for record in journal.begun_runs():
        for vm in (record.context or {}).get("vms", ()):
            if vm.get("provider") == Provider.LIBVIRT.value and vm.get("endpoint_id") == endpoint_id:
                found = vm_id(vm.get("name", ""))
                if found is not None:
                    held.add(found)
    return held


def left_to_stock(vm_ids: Iterable[int | str], held: set[int]) -> list[int | str]:
    """``vm_ids`` (as the stock caller gave them) less those the plugin holds."""
    return [v for v in vm_ids if not (str(v).isdigit() and int(v) in held)]
