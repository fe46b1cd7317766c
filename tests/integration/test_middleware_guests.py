"""TrueNAS's own VMs in the plugin, inside the middlewared double (25.10, 26.0 and 27 shapes),
driven by zettarepl's observer as TS-25.10.6 ``plugins/zettarepl.py:192-233`` drives it.

TrueNAS's libvirtd stands here as libvirt's test driver (``test:///<node.xml>``, libvirt's
own code in this process: one guest ``1_web`` with an agent channel and its disk on the
task's dataset); tests/integration/test_libvirt_guest.py freezes a real QEMU guest. What is
shown: a task whose dataset holds only local VMs is coordinated (the guest frozen and
thawed, the snapshot labelled), the stock pause is given every VM but the one the plugin
holds, and a stock pause whose shape is unknown means no local VM is coordinated at all.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from truenas_vmware_coord.libvirt.settings import LibvirtSettings
from truenas_vmware_coord.truenas import guests

from tests.middleware_double import RELEASES, harness, stock_vm
from tests.middleware_double.middleware import Middleware
from tests.middleware_double.zettarepl import Observer, run_task

_n = itertools.count()
NODE = """<node>
  <domain type='test'>
    <name>1_web</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory>65536</memory>
    <os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><source file='{disk}'/><target dev='vda'/></disk>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    </devices>
  </domain>
</node>
"""


@pytest.fixture
def dataset(zfs_pool) -> Iterator[str]:
    name = zfs_pool.create_dataset(f"vms{os.getpid()}/d{next(_n)}")
    yield name
    zfs_pool.destroy_dataset(name, recursive=True)


@pytest.fixture
def truenas_libvirt(tmp_path: Path, zfs_pool, dataset: str,
                    monkeypatch: pytest.MonkeyPatch) -> LibvirtSettings:
    node = tmp_path / "node.xml"
    node.write_text(NODE.format(disk=zfs_pool.dataset_mountpoint(dataset) / "web.img"))
    settings = LibvirtSettings(guests.ENDPOINT_NAME, f"test://{node}")
    monkeypatch.setattr(guests, "local_settings", lambda: settings)
    return settings


def periodic(mw: Middleware, dataset: str) -> dict:
    row = {"id": len(mw.snapshot_tasks) + 1, "dataset": dataset, "recursive": False, "exclude": [],
           "naming_schema": f"auto-{next(_n)}-%Y%m%d-%H%M%S", "allow_empty": True}
    mw.snapshot_tasks.append(row)
    return row


@pytest.mark.parametrize("release", RELEASES)
def test_local_vms_are_frozen_and_held_back_from_the_stock_pause(tmp_path: Path, zfs_pool, dataset: str,
                                                                 truenas_libvirt, release: str) -> None:
    mw, _plugin = harness.start(tmp_path / "mw", release=release)
    try:
        harness.wait_jobs(mw)
        stock_vm.STOCK_CALLS.clear()
        stock_vm.VMS_ON[dataset] = [1, 2]   # stock finds 1_web and a VM 2 the plugin does not know
        observer = Observer(mw)
        tick = run_task(observer, periodic(mw, dataset))
        assert observer.client.calls == [
            "vmware.periodic_snapshot_task_begin", "vmware.periodic_snapshot_task_proceed",
            "vm.periodic_snapshot_task_begin", "vm.suspend_vms", "vmware.periodic_snapshot_task_end",
            "vm.resume_suspended_vms"]
        # frozen by the plugin, so not paused by stock; VM 2 paused as stock always did
        assert stock_vm.STOCK_CALLS == [("suspend_vms", ("2",)), ("resume_suspended_vms", ("1", "2"))]
        manifest = mw.call_sync("vmware_coord.manifest", tick.snapshot)
        [web] = manifest["vms"]
        assert (web["name"], web["provider"], web["achieved"], web["undo"]) == (
            "1_web", "libvirt", "fsfreeze", "thawed")
        assert web["endpoint_id"] == truenas_libvirt.id
        assert zfs_pool.get(tick.snapshot, "freenas:vmsynced") == "Y"
    finally:
        harness.stop(mw)


def test_an_unknown_stock_pause_means_no_local_vm_is_coordinated(tmp_path: Path, dataset: str,
                                                                 truenas_libvirt) -> None:
    mw, plugin = harness.start(tmp_path / "mw", vm_shape="changed")
    try:
        harness.wait_jobs(mw)
        takeover = sys.modules["truenas_vmware_coord.truenas.middlewared.takeover"]
        assert takeover.VM_TAKEOVER_PROBLEMS and plugin.TAKEOVER_PROBLEMS == []
        assert [a.klass.name for a in mw.alert.list()] == ["VMwareCoordTakeover"]
        stock_vm.STOCK_CALLS.clear()
        stock_vm.VMS_ON[dataset] = [1]
        observer = Observer(mw)
        run_task(observer, periodic(mw, dataset))
        # nothing frozen: the stock pause, left as it was, pauses the VM as it always did
        assert observer.client.calls[:3] == ["vmware.periodic_snapshot_task_begin",
                                             "vm.periodic_snapshot_task_begin", "vm.suspend_vms"]
        assert stock_vm.STOCK_CALLS == [("suspend_vms", ("1",)), ("resume_suspended_vms", ("1",))]
        assert mw.call_sync("vmware_coord.runs", 10) == []
    finally:
        harness.stop(mw)
