"""A policy resolved against one VM: which policy applies, and what to try, in order, and why.

Pure and deterministic: given one VM's facts, its blockers (computed by ``selection``), the
policies and the default ladder, ``resolve`` decides what to try and says why.

Decisions recorded here (also in ``schemas/policy.json``, which users read):

- A powered-off or suspended VM needs nothing: its disks (and saved memory) are consistent
  on their own, so its ladder is empty and it is reported as ``powered_off`` consistency.
  Only ``exclude`` overrides that (the user asked not to look at it).
- Missing VMware Tools *prunes* quiesce rather than demoting it to a plain snapshot: VMware
  would silently ignore the quiesce flag, and a non-quiesced, memoryless VMware snapshot adds
  nothing to the ZFS snapshot's own crash consistency but costs a stun and a consolidation.
  It also prunes power_off: a guest shutdown needs Tools, and a hard power-off is no better
  than crash consistency, at the price of downtime. Which blocker rules out which strategy
  is each strategy's own ``pruned_by``.
- When every rung is pruned, the ladder becomes ``crash`` and the summary says so plainly.
- A rung for another kind of hypervisor (``quiesce`` for a libvirt guest, ``fsfreeze`` for a
  VMware VM) is pruned with that reason, so one policy can list both providers' strategies.
- A VM no policy matches gets the default ladder of its provider (``defaults``): VMware
  VMs ``quiesce -> crash``, libvirt guests ``fsfreeze -> crash``.
- A libvirt guest someone else paused is treated as running (it is not off: its disks are
  only crash-consistent), and its blocker prunes every strategy that would act on it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Blocker, BlockerKind, Consistency, PowerState, Provider, Strategy, VmFacts
from .patterns import glob_matches, regex_matches
from .policy import (
    DEFAULT_LADDER,
    DEFAULT_LIBVIRT_LADDER,
    CustomAttributeMatch,
    Ladder,
    LadderOptions,
    Policy,
    options_to_dict,
)
from .strategies import STRATEGIES

# --- matching --------------------------------------------------------------------------------


def policy_matches(
    policy: Policy, vm: VmFacts, blockers: Collection[Blocker], *, mapping_ids: Collection[str] = ()
) -> bool:
    """Whether ``policy`` (enabled or not) applies to ``vm`` by scope and every condition."""
    scope = policy.scope
    if scope is not None:
        if scope.endpoint_id is not None and scope.endpoint_id != vm.endpoint_id:
            return False
        if scope.mapping_id is not None and scope.mapping_id not in mapping_ids:
            return False
    m = policy.match
    attrs = dict(vm.custom_attributes)
    checks = (
        m.name_glob is None or glob_matches(m.name_glob, vm.name),
        m.name_regex is None or regex_matches(m.name_regex, vm.name),
        m.moref is None or m.moref == vm.moref,
        m.instance_uuid is None or m.instance_uuid.lower() == (vm.instance_uuid or "").lower(),
        m.folder_glob is None or glob_matches(m.folder_glob, vm.folder_path),
        m.custom_attribute is None or _attribute_holds(m.custom_attribute, attrs),
        m.guest_family is None or m.guest_family == (vm.guest_family or "").lower(),
        m.provider is None or m.provider is vm.provider,
        not m.has_blocker or any(b.kind in m.has_blocker for b in blockers),
    )
    return all(checks)


def _attribute_holds(cond: CustomAttributeMatch, attrs: Mapping[str, str]) -> bool:
    value = attrs.get(cond.key)
    if cond.value is None:
        return bool(value)
    return value == cond.value


def select_policy(
    vm: VmFacts,
    blockers: Collection[Blocker],
    policies: Iterable[Policy],
    *,
    mapping_ids: Collection[str] = (),
) -> Policy | None:
    """The enabled policy with the lowest priority number that matches, or None (default)."""
    for policy in sorted(policies, key=lambda p: (p.priority, p.name.casefold())):
        if policy.enabled and policy_matches(policy, vm, blockers, mapping_ids=mapping_ids):
            return policy
    return None


# --- resolution ------------------------------------------------------------------------------

_KIND_WORDS: Mapping[BlockerKind, str] = {
    BlockerKind.PASSTHROUGH: "PCI passthrough",
    BlockerKind.VGPU: "vGPU",
    BlockerKind.SRIOV: "SR-IOV network adapter",
    BlockerKind.FAULT_TOLERANCE: "Fault Tolerance",
    BlockerKind.PHYSICAL_RDM: "physical-mode RDM",
    BlockerKind.BUS_SHARING: "SCSI bus sharing",
    BlockerKind.MULTI_WRITER: "multi-writer disk",
    BlockerKind.NVDIMM: "NVDIMM",
    BlockerKind.INDEPENDENT_DISK: "independent disk",
    BlockerKind.NO_TOOLS: "VMware Tools not running",
    BlockerKind.NO_SNAPSHOT_CAPABILITY: "VMware reports snapshots unsupported",
    BlockerKind.NO_QUIESCE_CAPABILITY: "VMware reports quiesced snapshots unsupported",
    BlockerKind.NO_MEMORY_CAPABILITY: "VMware reports memory snapshots unsupported",
    BlockerKind.CONSOLIDATION_NEEDED: "disks need consolidation",
    BlockerKind.DEEP_SNAPSHOT_CHAIN: "snapshot chain too deep",
    BlockerKind.NO_AGENT_CHANNEL: "no guest agent channel",
    BlockerKind.AGENT_NOT_ANSWERING: "guest agent not answering",
    BlockerKind.AGENT_REFUSES_FREEZE: "guest agent refuses to freeze",
    BlockerKind.GUEST_PAUSED: "guest paused",
}
_PROVIDER_WORDS: Mapping[Provider, str] = {Provider.VSPHERE: "VMware VMs", Provider.LIBVIRT: "libvirt guests"}

@dataclass(frozen=True)
class PrunedRung:
    rung: Strategy
    reason: str  # "quiesce pruned: PCI passthrough device 'pcipassthrough-0' (policy 'gpu-hosts')"


@dataclass(frozen=True)
class Resolution:
    """What to try for one VM, and why; the engine walks ``ladder`` in order."""

    endpoint_id: str
    moref: str
    vm_name: str
    policy: str | None           # matched policy's name; None = the default policy
    policy_id: int | None
    configured: tuple[Strategy, ...]   # the ladder as the policy wrote it
    ladder: tuple[Strategy, ...]       # after pruning; () = nothing to do (VM not running)
    pruned: tuple[PrunedRung, ...]
    notes: tuple[str, ...]
    options: LadderOptions
    required: Consistency
    expected: Consistency        # the best this VM can get: what ladder[0] gives
    summary: str

    @property
    def policy_label(self) -> str:
        return f"policy '{self.policy}'" if self.policy is not None else "default policy"

    @property
    def meets_requirement(self) -> bool:
        """Whether the best attainable result is at least what the policy requires."""
        return self.expected.rank >= self.required.rank

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.endpoint_id,
            "moref": self.moref,
            "vm_name": self.vm_name,
            "policy": self.policy,
            "policy_id": self.policy_id,
            "configured": [r.value for r in self.configured],
            "ladder": [r.value for r in self.ladder],
            "pruned": [{"rung": p.rung.value, "reason": p.reason} for p in self.pruned],
            "notes": list(self.notes),
            "options": options_to_dict(self.options),
            "required": self.required.value,
            "expected": self.expected.value,
            "meets_requirement": self.meets_requirement,
            "summary": self.summary,
        }


def resolve(
    vm: VmFacts,
    blockers: Sequence[Blocker],
    policies: Iterable[Policy],
    default: Ladder = DEFAULT_LADDER,
    *,
    mapping_ids: Collection[str] = (),
    defaults: Mapping[Provider, Ladder] | None = None,
) -> Resolution:
    """Decide what to try for ``vm``: pure and deterministic.

    ``mapping_ids`` are the mappings through which the VM was found (for mapping scopes).
    ``default`` is the VMware VMs' default ladder, ``defaults`` the others' by provider.
    """
    policy = select_policy(vm, blockers, policies, mapping_ids=mapping_ids)
    fallback = {Provider.VSPHERE: default, Provider.LIBVIRT: DEFAULT_LIBVIRT_LADDER, **(defaults or {})}
    chosen = policy.ladder if policy is not None else fallback[vm.provider]
    label = f"policy '{policy.name}'" if policy is not None else "default policy"
    rungs = chosen.rungs
    pruned: list[PrunedRung] = []
    notes: list[str] = []

    if rungs == (Strategy.EXCLUDE,):
        ladder, expected, summary = rungs, Consistency.EXCLUDED, f"excluded ({label})"
    elif vm.power_state not in (PowerState.ON, PowerState.PAUSED):
        ladder, expected = (), Consistency.POWERED_OFF
        state = "suspended" if vm.power_state is PowerState.SUSPENDED else "powered off"
        summary = f"{state}: its disks are consistent as they are, nothing to do ({label})"
    else:
        pruned = [p for p in (_prune(r, vm.provider, blockers, label) for r in rungs) if p is not None]
        gone = {p.rung for p in pruned}
        ladder = tuple(r for r in rungs if r not in gone) or (Strategy.CRASH,)
        expected = STRATEGIES[ladder[0]].yields
        notes = _caveats(ladder, blockers)
        summary = _summary(ladder, rungs, pruned, label)

    required = chosen.required
    if expected.rank < required.rank:
        notes.append(f"requires '{required.value}' but can at best be '{expected.value}' ({label})")
    return Resolution(
        endpoint_id=vm.endpoint_id,
        moref=vm.moref,
        vm_name=vm.name,
        policy=policy.name if policy is not None else None,
        policy_id=policy.id if policy is not None else None,
        configured=rungs,
        ladder=ladder,
        pruned=tuple(pruned),
        notes=tuple(notes),
        options=chosen.options,
        required=required,
        expected=expected,
        summary=summary,
    )


def _prune(rung: Strategy, provider: Provider, blockers: Sequence[Blocker], label: str) -> PrunedRung | None:
    module = STRATEGIES[rung]
    if provider not in module.providers:
        only = " and ".join(_PROVIDER_WORDS[p] for p in sorted(module.providers))
        return PrunedRung(rung, f"{rung.value} pruned: a strategy for {only}, and this is one of the "
                                f"{_PROVIDER_WORDS[provider]} ({label})")
    why = module.pruned_by
    causes = [why[b.kind].format(blocker=describe_blocker(b)) for b in blockers if b.kind in why]
    if not causes:
        return None
    return PrunedRung(rung, f"{rung.value} pruned: {'; '.join(dict.fromkeys(causes))} ({label})")


def describe_blocker(blocker: Blocker) -> str:
    """Plain words for a blocker: the selection module's detail ("PCI passthrough device
    'pcipassthrough-0'"), or words for its kind when it gave none."""
    return blocker.detail.strip() or _KIND_WORDS.get(blocker.kind, blocker.kind.value)


def _caveats(ladder: tuple[Strategy, ...], blockers: Sequence[Blocker]) -> list[str]:
    notes = [f"{describe_blocker(b)} ({STRATEGIES[rung].caveats[b.kind]})"
             for rung in ladder for b in blockers if b.kind in STRATEGIES[rung].caveats]
    return list(dict.fromkeys(notes))


def _summary(
    ladder: tuple[Strategy, ...], configured: tuple[Strategy, ...], pruned: list[PrunedRung], label: str
) -> str:
    reasons = "".join(f"; {p.reason}" for p in pruned)
    if ladder == (Strategy.CRASH,):
        lead = "crash-consistent" if Strategy.CRASH in configured else (
            "crash-consistent: no strategy of the ladder can work for this VM"
        )
        return f"{lead} ({label}){reasons}"
    return f"{' -> '.join(r.value for r in ladder)} ({label}){reasons}"
