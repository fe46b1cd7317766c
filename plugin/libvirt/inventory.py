"""A libvirt host's guests as ``VmFacts``: one XML read per domain, one agent question per
running guest.

What is read (libvirt's domain XML format, ``formatdomain``):
- disks (``devices/disk`` with device ``disk`` or ``lun``, not read-only: a CD-ROM or a
  read-only disk is not written, so it needs no consistency): ``source@file``,
  ``source@dev`` (a zvol is ``/dev/zvol/<pool>/<name>``), ``source@dir``, and
  ``source@pool`` + ``@volume``, resolved to the volume's path through the storage API;
  network disks have no host path and are on no dataset of this NAS;
- PCI passthrough (``hostdev[@type='pci']``) and mediated devices such as vGPUs
  (``hostdev[@type='mdev']``);
- the guest agent channel (``channel/target[@name='org.qemu.guest_agent.0']``) and, in a
  running domain's XML, whether the agent has the channel open (``state='connected'``).

Then, for a running guest whose agent is connected, the agent is asked what it would freeze
(``virDomainGetFSInfo``, guest-get-fsinfo) within the agent timeout: no answer means
``not_answering``; an agent that has disabled the command has disabled freezing too (the
Windows agent disables guest-get-fsinfo and the freeze commands together when its VSS
provider is missing), which is ``freeze_disabled``; an agent that says it is in frozen
state was frozen by someone else (``already_frozen``). Nothing here changes a domain but
its agent response timeout (``hypervisor.py`` says why).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from ..domain.model import DeviceFacts, DiskFacts, PowerState, Provider, VmFacts
from .errors import message_of

AGENT_CHANNEL = "org.qemu.guest_agent.0"
_POWER = {libvirt.VIR_DOMAIN_RUNNING: PowerState.ON, libvirt.VIR_DOMAIN_BLOCKED: PowerState.ON,
          libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED}


def power_state(state: int) -> PowerState:
    """libvirt's domain state in the product's words (shut off, crashed, no state: off)."""
    return _POWER.get(state, PowerState.OFF)


@dataclass(frozen=True)
class AgentAnswer:
    """What the agent said when asked what it would freeze."""

    state: str                            # answering | not_answering | freeze_disabled
    detail: str = ""
    filesystems: tuple[str, ...] = ()
    family: str | None = None             # windows | linux | other, when the agent says


def disks_of(root: ET.Element, volume_path: Callable[[str, str], str | None]) -> tuple[DiskFacts, ...]:
    out = []
    for i, disk in enumerate(root.findall("./devices/disk")):
        if disk.get("device", "disk") not in ("disk", "lun") or disk.find("readonly") is not None:
            continue
        source, target = disk.find("source"), disk.find("target")
        kind = disk.get("type", "file")
        path: str | None = None
        if source is not None:
            if kind == "volume" and source.get("pool") and source.get("volume"):
                path = volume_path(source.get("pool", ""), source.get("volume", ""))
            elif kind == "network":
                path = f"{source.get('protocol', 'network')}:{source.get('name', '')}"
            else:
                path = source.get("file") or source.get("dev") or source.get("dir")
        dev = target.get("dev", f"disk{i}") if target is not None else f"disk{i}"
        out.append(DiskFacts(key=i, label=f"{dev} ({kind})", file=path or "", datastore=None,
                             sharing="sharingMultiWriter" if disk.find("shareable") is not None else None))
    return tuple(out)


def devices_of(root: ET.Element) -> tuple[DeviceFacts, ...]:
    out = []
    for i, hostdev in enumerate(root.findall("./devices/hostdev")):
        kind = hostdev.get("type")
        if kind == "pci":
            a = hostdev.find("./source/address")
            where = ("{:04x}:{:02x}:{:02x}.{:x}".format(*(int(a.get(k, "0"), 0) for k in (
                "domain", "bus", "slot", "function"))) if a is not None else "?")
            out.append(DeviceFacts(key=i, label=f"hostdev {where}", kind="passthrough"))
        elif kind == "mdev":
            a = hostdev.find("./source/address")
            out.append(DeviceFacts(key=i, label=f"mdev {a.get('uuid', '?') if a is not None else '?'}",
                                   kind="vgpu", detail=hostdev.get("model", "")))
    return tuple(out)


def agent_channel(root: ET.Element) -> ET.Element | None:
    """The guest agent channel's target element, or None when the domain has none."""
    for target in root.findall("./devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            return target
    return None


def guest_facts(endpoint_id: str, uuid: str, state: int, xml: str,
                volume_path: Callable[[str, str], str | None],
                probe: Callable[[], AgentAnswer]) -> VmFacts:
    """One domain's facts from its XML; ``probe`` asks its agent, only when the agent can answer."""
    root = ET.fromstring(xml)   # noqa: S314 - libvirt's own XML for a domain, not user input
    power = power_state(state)
    channel = agent_channel(root)
    answer = AgentAnswer("not_running")
    if channel is None:
        answer = AgentAnswer("no_channel")
    elif power is PowerState.ON:
        answer = (AgentAnswer("not_connected") if channel.get("state") == "disconnected"
                  else probe())
    return VmFacts(
        endpoint_id=endpoint_id, moref=uuid, name=root.findtext("name", uuid), instance_uuid=uuid,
        bios_uuid=None, vcenter_uuid=None, power_state=power, guest_family=answer.family,
        disks=disks_of(root, volume_path), devices=devices_of(root), provider=Provider.LIBVIRT,
        agent=None if answer.state == "not_running" else answer.state, agent_detail=answer.detail,
        guest_filesystems=answer.filesystems)


def ask_agent(domain: libvirt.virDomain) -> AgentAnswer:
    """What the guest's agent would freeze (bounded by the agent timeout set on the domain)."""
    try:
        found = domain.fsInfo(0)
    except libvirt.libvirtError as exc:
        text = message_of(exc)
        if "frozen state" in text:   # qemu-ga disables most commands while frozen
            return AgentAnswer("already_frozen", text)
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_UNSUPPORTED or "has been disabled" in text:
            return AgentAnswer("freeze_disabled", text)
        return AgentAnswer("not_answering", text)
    filesystems = tuple(f"{mountpoint} ({fstype} on {', '.join(disks) or name})"
                        for mountpoint, name, fstype, disks in found)
    return AgentAnswer("answering", filesystems=filesystems, family=_family(domain))


def _family(domain: libvirt.virDomain) -> str | None:
    """The guest OS family the agent reports (guest-get-osinfo: the Windows agent says
    ``mswindows``, a Linux one its distribution's os-release id), None when it cannot say."""
    try:
        found = domain.guestInfo(libvirt.VIR_DOMAIN_GUEST_INFO_OS, 0).get("os.id")
    except libvirt.libvirtError:
        return None
    if not found:
        return None
    return "windows" if found == "mswindows" else "linux"
