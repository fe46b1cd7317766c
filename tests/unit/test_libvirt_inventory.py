"""The libvirt adapter against libvirt's own test driver (``test:///<node.xml>``: libvirt's
real XML parser and API in this process, no daemon, no QEMU). What the test driver cannot
show (agent errors, a real freeze, the agent timeout) is in
tests/integration/test_libvirt_guest.py, against a real QEMU guest.

data/libvirt-node.xml holds: ``web`` (a file, a zvol, a storage-pool volume, a network disk
and a CD-ROM; an agent channel; a PCI passthrough device), ``cold`` (shut off) and
``noagent`` (no agent channel)."""

from __future__ import annotations

from pathlib import Path

import factories as f
import libvirt
import pytest
from truenas_vmware_coord.domain.model import PowerState, Provider
from truenas_vmware_coord.domain.selection import build_plan
from truenas_vmware_coord.engine.ports import Gone, NoAnswer, Refused
from truenas_vmware_coord.libvirt.errors import failure_from
from truenas_vmware_coord.libvirt.hypervisor import LibvirtConnector, LibvirtHypervisor
from truenas_vmware_coord.libvirt.settings import LibvirtSettings

NODE = Path(__file__).parent / "data" / "libvirt-node.xml"
WEB = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hv() -> LibvirtHypervisor:
    session = LibvirtConnector([LibvirtSettings("t", f"test://{NODE}")]).open("libvirt:t")
    yield session
    session.close()


def test_every_domain_with_its_disks_devices_and_agent(hv: LibvirtHypervisor) -> None:
    inventory = hv.inventory()
    by_name = {v.name: v for v in inventory.vms}
    web = by_name["web"]
    assert (web.provider, web.moref, web.power_state, web.agent) == (Provider.LIBVIRT, WEB, PowerState.ON,
                                                                    "answering")
    # the CD-ROM is read-only media: not a disk that needs consistency
    assert [d.file for d in web.disks] == ["/mnt/tank/vm/web.img", "/dev/zvol/tank/vm/web-data",
                                           "/mnt/tank/pool/extra.img", "rbd:rbd/img"]
    assert [(d.kind, d.label) for d in web.devices] == [("passthrough", "hostdev 0000:03:00.0")]
    assert web.guest_filesystems == ("/ (ext4 on vda)", "/boot (ext4 on vda)")   # the test driver's fakes
    assert (by_name["noagent"].agent, by_name["cold"].power_state) == ("no_channel", PowerState.OFF)
    assert inventory.endpoint_id == "libvirt:t" and inventory.api_version.startswith("libvirt ")


def test_the_plan_places_each_disk_and_names_the_blockers(hv: LibvirtHypervisor) -> None:
    storage = f.storage(("tank", "tank/vm", "tank/pool"))
    plan = build_plan("tank", inventories=[hv.inventory()], mappings=[], storage=storage, now=f.NOW,
                      recursive=True)
    web = next(v for v in plan.vms if v.facts.name == "web")
    assert [(file.path, file.datasets) for file in web.files] == [
        ("/dev/zvol/tank/vm/web-data", ("tank/vm/web-data",)), ("/mnt/tank/pool/extra.img", ("tank/pool",)),
        ("/mnt/tank/vm/web.img", ("tank/vm",))]
    assert [b.kind.value for b in web.blockers] == ["passthrough"]
    noagent = next(v for v in plan.vms if v.facts.name == "noagent")
    assert [b.kind.value for b in noagent.blockers] == ["no_agent_channel"]
    assert {v.facts.name: v.status.value for v in plan.vms} == {
        "web": "needs_action", "noagent": "needs_action", "cold": "nothing_to_do"}


def test_freeze_thaw_pause_and_resume_are_tasks_with_answers(hv: LibvirtHypervisor) -> None:
    assert hv.wait(hv.start_freeze(WEB), 5).result == "2"
    assert hv.wait(hv.start_thaw(WEB), 5).result == "2"
    assert hv.wait(hv.start_pause(WEB), 5).ok and hv.vm_states([WEB])[WEB].power_state is PowerState.PAUSED
    assert hv.wait(hv.start_resume(WEB), 5).ok and hv.vm_states([WEB])[WEB].power_state is PowerState.ON
    cold = "22222222-2222-3333-4444-555555555555"
    assert isinstance(hv.wait(hv.start_thaw(cold), 5).failure, Gone)   # not running: nothing frozen
    assert hv.vm_states(["99999999-2222-3333-4444-555555555555"]) == {} and hv.all_snapshots() == {}
    with pytest.raises(Gone):
        hv.start_freeze("99999999-2222-3333-4444-555555555555")
    with pytest.raises(Refused):
        hv.start_suspend(WEB)


def _error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 0, "", None, None, 0, 0)
    return exc


@pytest.mark.parametrize(("code", "message", "kind"), [
    # what the real QEMU driver says (seen in tests/integration/test_libvirt_guest.py)
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding: QEMU guest agent is not connected",
     Refused),
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding: Guest agent not available for now",
     NoAnswer),
    (libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: unable to execute QEMU agent command "
     "'guest-fsfreeze-freeze': Command guest-fsfreeze-freeze has been disabled", Refused),
    (libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, "argument unsupported: QEMU guest agent is not configured",
     Refused),
    (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running", Refused),
    (libvirt.VIR_ERR_NO_DOMAIN, "Domain not found", Gone),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer", NoAnswer),
])
def test_only_an_answer_that_means_nothing_happened_is_a_refusal(code: int, message: str, kind: type) -> None:
    failure = failure_from(_error(code, message), "freezing guest 'db'")
    assert type(failure) is kind and failure.message.startswith("freezing guest 'db': ")
