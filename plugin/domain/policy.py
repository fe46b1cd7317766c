"""Per-VM exception policies: the documents, their validation, matching and resolution.

A policy says, for the VMs it matches, which strategies to try in order (its *ladder*).
Resolution is pure: given one VM's facts, its blockers (computed by ``selection``), the
policies and the default ladder, it decides deterministically what to try and says why.

Decisions recorded here (also in ``schemas/policy.json``, which users read):

- Priority: the LOWEST number is evaluated first and the first enabled policy whose scope and
  every condition hold wins, like firewall rules. Priorities are unique, so there are no
  ties; if a caller hands in duplicates anyway, the name breaks the tie so the answer stays
  deterministic.
- Names (VM names, folder paths, policy names) compare case-insensitively; the VM-name regex
  must match the whole name (``re.fullmatch``) and is case-insensitive unless it says
  ``(?-i:...)``. Managed object ids and custom attribute keys/values compare exactly.
- A powered-off or suspended VM needs nothing: its disks (and saved memory) are consistent
  on their own, so its ladder is empty and it is reported as ``powered_off`` consistency.
  Only ``exclude`` overrides that (the user asked not to look at it).
- Missing VMware Tools *prunes* quiesce rather than demoting it to a plain snapshot: VMware
  would silently ignore the quiesce flag, and a non-quiesced, memoryless VMware snapshot adds
  nothing to the ZFS snapshot's own crash consistency but costs a stun and a consolidation.
  It also prunes power_off: a guest shutdown needs Tools, and a hard power-off is no better
  than crash consistency, at the price of downtime.
- When every rung is pruned, the ladder becomes ``crash`` and the summary says so plainly.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import FieldError, InvalidInput
from truenas_vmware_coord.domain.model import (
    Blocker,
    BlockerKind,
    Consistency,
    PowerState,
    Strategy,
    VmFacts,
)


class VssContext(enum.StrEnum):
    """Windows VSS context of a quiesced snapshot, in the words users write."""

    APPLICATION = "application"
    FILE_SYSTEM = "file_system"

    @property
    def vmware_value(self) -> str:
        """``VirtualMachineWindowsQuiesceSpec.vssBackupContext`` for this choice."""
        return _VSS_VMWARE[self]


# ctx_auto lets Tools run the writers (application-consistent) the way a plain quiesced
# snapshot does; ctx_file_share_backup skips the writers so another product's log chain
# is not truncated.
_VSS_VMWARE = {VssContext.APPLICATION: "ctx_auto", VssContext.FILE_SYSTEM: "ctx_file_share_backup"}

# What a rung gives when it works.
RUNG_CONSISTENCY: Mapping[Strategy, Consistency] = {
    Strategy.QUIESCE: Consistency.QUIESCED,
    Strategy.MEMORY: Consistency.MEMORY,
    Strategy.CRASH: Consistency.CRASH,
    Strategy.POWER_OFF: Consistency.POWERED_OFF,
    Strategy.SUSPEND: Consistency.POWERED_OFF,
    Strategy.EXCLUDE: Consistency.EXCLUDED,
}


# --- the documents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LadderOptions:
    """Settings of the strategies; each only matters to the strategy it names."""

    quiesce_timeout_minutes: int | None = None  # CreateSnapshotEx GuestQuiesceSpec, 5..240
    deadline_seconds: int | None = None          # per-VM engine deadline; None = engine's
    vss_context: VssContext | None = None
    shutdown_timeout_seconds: int = 300
    hard_power_off: bool = False


@dataclass(frozen=True)
class Ladder:
    """The strategies to try in order, their options and the consistency that is required."""

    rungs: tuple[Strategy, ...]
    options: LadderOptions = LadderOptions()
    requires: Consistency | None = None

    @property
    def required(self) -> Consistency:
        """``requires`` if given, else what the first rung gives.

        A fallback is a fallback, not a success: with the default "quiesce, then crash" a VM
        that ended crash-consistent did not get what was asked for, and the snapshot's
        ``vmsynced`` must say so. A policy that accepts less says ``requires``, or starts
        with ``crash`` (crash-consistent *by policy* is compliant).
        """
        if self.requires is not None:
            return self.requires
        return RUNG_CONSISTENCY[self.rungs[0]]


DEFAULT_LADDER = Ladder(rungs=(Strategy.QUIESCE, Strategy.CRASH))


@dataclass(frozen=True)
class Scope:
    """Where a policy applies: VMs of one endpoint, or found through one mapping."""

    endpoint_id: str | None = None
    mapping_id: str | None = None


@dataclass(frozen=True)
class CustomAttributeMatch:
    key: str
    value: str | None = None  # None: any non-empty value


@dataclass(frozen=True)
class MatchConditions:
    """Conditions that must all hold; unset ones are ignored, so none matches every VM."""

    name_glob: str | None = None
    name_regex: str | None = None
    moref: str | None = None
    instance_uuid: str | None = None
    folder_glob: str | None = None
    custom_attribute: CustomAttributeMatch | None = None
    guest_family: str | None = None
    has_blocker: tuple[BlockerKind, ...] = ()  # any one of them


@dataclass(frozen=True)
class Policy:
    name: str
    priority: int  # lower number = evaluated first
    ladder: Ladder
    enabled: bool = True
    description: str = ""
    scope: Scope | None = None
    match: MatchConditions = MatchConditions()
    id: int | None = None  # assigned by the store

    def to_dict(self) -> dict[str, Any]:
        return policy_to_dict(self)


# --- parsing and validation ------------------------------------------------------------------


def parse_policy(document: Any, *, field: str = "policy") -> Policy:
    """A ``Policy`` from a user's document, or ``InvalidInput`` naming every bad field."""
    schemas.validate("policy", document, field=field)
    errors = [*_ladder_problems(document, field), *_match_problems(document.get("match"), field)]
    if errors:
        raise InvalidInput(errors)
    scope = document.get("scope")
    return Policy(
        id=_int_or_none(document.get("id")),
        name=document["name"],
        priority=int(document["priority"]),
        enabled=document.get("enabled", True),
        description=document.get("description", ""),
        scope=Scope(**scope) if scope else None,
        match=_match_from(document.get("match") or {}),
        ladder=_ladder_from(document),
    )


def parse_ladder(document: Any, *, field: str = "default_policy") -> Ladder:
    """The default policy of the engine settings: ``{"ladder": [...], "options", "requires"}``."""
    schemas.validate("policy", document, field=field, definition="default_policy")
    errors = list(_ladder_problems(document, field))
    if errors:
        raise InvalidInput(errors)
    return _ladder_from(document)


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The canonical JSON document; ``parse_policy`` of it gives back an equal policy."""
    out: dict[str, Any] = {} if policy.id is None else {"id": policy.id}
    out |= {
        "name": policy.name,
        "description": policy.description,
        "enabled": policy.enabled,
        "priority": policy.priority,
        "scope": _scope_to_dict(policy.scope),
        "match": _match_to_dict(policy.match),
    }
    return out | ladder_to_dict(policy.ladder)


def ladder_to_dict(ladder: Ladder) -> dict[str, Any]:
    return {
        "ladder": [r.value for r in ladder.rungs],
        "options": options_to_dict(ladder.options),
        "requires": ladder.requires.value if ladder.requires else None,
    }


def options_to_dict(options: LadderOptions) -> dict[str, Any]:
    return {
        "quiesce_timeout_minutes": options.quiesce_timeout_minutes,
        "deadline_seconds": options.deadline_seconds,
        "vss_context": options.vss_context.value if options.vss_context else None,
        "shutdown_timeout_seconds": options.shutdown_timeout_seconds,
        "hard_power_off": options.hard_power_off,
    }


def _scope_to_dict(scope: Scope | None) -> dict[str, str] | None:
    if scope is None:
        return None
    return {k: v for k, v in (("endpoint_id", scope.endpoint_id), ("mapping_id", scope.mapping_id)) if v}


def _match_to_dict(match: MatchConditions) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: getattr(match, k)
        for k in ("name_glob", "name_regex", "moref", "instance_uuid", "folder_glob", "guest_family")
        if getattr(match, k) is not None
    }
    if match.custom_attribute is not None:
        out["custom_attribute"] = {"key": match.custom_attribute.key, "value": match.custom_attribute.value}
    if match.has_blocker:
        out["has_blocker"] = [k.value for k in match.has_blocker]
    return out


def _ladder_from(document: Mapping[str, Any]) -> Ladder:
    opts = document.get("options") or {}
    vss = opts.get("vss_context")
    requires = document.get("requires")
    return Ladder(
        rungs=tuple(Strategy(r) for r in document["ladder"]),
        options=LadderOptions(
            quiesce_timeout_minutes=_int_or_none(opts.get("quiesce_timeout_minutes")),
            deadline_seconds=_int_or_none(opts.get("deadline_seconds")),
            vss_context=VssContext(vss) if vss else None,
            shutdown_timeout_seconds=int(opts.get("shutdown_timeout_seconds", 300)),
            hard_power_off=opts.get("hard_power_off", False),
        ),
        requires=Consistency(requires) if requires else None,
    )


def _match_from(match: Mapping[str, Any]) -> MatchConditions:
    attr = match.get("custom_attribute")
    return MatchConditions(
        name_glob=match.get("name_glob"),
        name_regex=match.get("name_regex"),
        moref=match.get("moref"),
        instance_uuid=match.get("instance_uuid"),
        folder_glob=match.get("folder_glob"),
        custom_attribute=CustomAttributeMatch(attr["key"], attr.get("value")) if attr else None,
        guest_family=match.get("guest_family"),
        has_blocker=tuple(BlockerKind(k) for k in match.get("has_blocker", ())),
    )


def _int_or_none(value: Any) -> int | None:
    # JSON Schema counts 5.0 as an integer; store it as 5 so documents round-trip exactly.
    return None if value is None else int(value)


def _ladder_problems(document: Mapping[str, Any], prefix: str) -> Iterable[FieldError]:
    rungs = [Strategy(r) for r in document["ladder"]]
    here = f"{prefix}.ladder"
    if Strategy.EXCLUDE in rungs and len(rungs) > 1:
        yield FieldError(here, "'exclude' must be the only strategy: an excluded VM is not touched at all")
    elif Strategy.CRASH in rungs[:-1]:
        yield FieldError(here, "'crash' always works, so nothing may follow it")
    requires = document.get("requires")
    if requires is not None and rungs:
        best = max(rungs, key=lambda r: RUNG_CONSISTENCY[r].rank)
        if Consistency(requires).rank > RUNG_CONSISTENCY[best].rank:
            yield FieldError(
                f"{prefix}.requires",
                f"'{requires}' cannot be reached: the best strategy listed, '{best.value}', "
                f"gives '{RUNG_CONSISTENCY[best].value}'",
            )


def _match_problems(match: Mapping[str, Any] | None, prefix: str) -> Iterable[FieldError]:
    match = match or {}
    if match.get("name_regex") is not None:
        problem = _regex_problem(match["name_regex"])
        if problem:
            yield FieldError(f"{prefix}.match.name_regex", problem)
    for key in ("name_glob", "folder_glob"):
        if match.get(key) is not None:
            problem = _glob_problem(match[key])
            if problem:
                yield FieldError(f"{prefix}.match.{key}", problem)


def _regex_problem(pattern: str) -> str | None:
    try:
        _compiled(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:  # "a{99999999999}"
        return f"invalid regular expression: {exc}"
    return None


def _glob_problem(pattern: str) -> str | None:
    # fnmatch takes an unclosed '[' literally; a user who typed one almost surely meant a set.
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                return (f"invalid wildcard: '[' at position {i} is never closed "
                        "(write '[[]' for a literal '[')")
            i = j
        i += 1
    return None


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _compiled_glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern.casefold()))


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
        m.name_glob is None or _compiled_glob(m.name_glob).match(vm.name.casefold()) is not None,
        m.name_regex is None or _compiled(m.name_regex).fullmatch(vm.name) is not None,
        m.moref is None or m.moref == vm.moref,
        m.instance_uuid is None or m.instance_uuid.lower() == (vm.instance_uuid or "").lower(),
        m.folder_glob is None or _compiled_glob(m.folder_glob).match(vm.folder_path.casefold()) is not None,
        m.custom_attribute is None or _attribute_holds(m.custom_attribute, attrs),
        m.guest_family is None or m.guest_family == (vm.guest_family or "").lower(),
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

_SNAPSHOT = frozenset({Strategy.QUIESCE, Strategy.MEMORY})
_SNAPSHOT_AND_SUSPEND = _SNAPSHOT | {Strategy.SUSPEND}

# Which rungs each blocker rules out on a powered-on VM (vsphere.md, "VMs that cannot be
# snapshotted"). DirectPath I/O, SR-IOV and FT VMs cannot be suspended either.
PRUNED_BY: Mapping[BlockerKind, frozenset[Strategy]] = {
    BlockerKind.PASSTHROUGH: _SNAPSHOT_AND_SUSPEND,
    BlockerKind.VGPU: _SNAPSHOT,
    BlockerKind.SRIOV: _SNAPSHOT_AND_SUSPEND,
    BlockerKind.FAULT_TOLERANCE: _SNAPSHOT_AND_SUSPEND,
    BlockerKind.PHYSICAL_RDM: _SNAPSHOT,
    BlockerKind.BUS_SHARING: _SNAPSHOT,
    BlockerKind.MULTI_WRITER: _SNAPSHOT,
    BlockerKind.NVDIMM: _SNAPSHOT,
    BlockerKind.INDEPENDENT_DISK: frozenset({Strategy.MEMORY}),
    BlockerKind.NO_TOOLS: frozenset({Strategy.QUIESCE, Strategy.POWER_OFF}),
    BlockerKind.NO_SNAPSHOT_CAPABILITY: _SNAPSHOT,
    BlockerKind.NO_QUIESCE_CAPABILITY: frozenset({Strategy.QUIESCE}),
    BlockerKind.NO_MEMORY_CAPABILITY: frozenset({Strategy.MEMORY}),
    BlockerKind.CONSOLIDATION_NEEDED: frozenset(),
    BlockerKind.DEEP_SNAPSHOT_CHAIN: _SNAPSHOT,
}

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
}

# Words for a (blocker, rung) pair where the blocker's own detail does not say why the rung
# is ruled out; "{blocker}" stands for that detail.
_WHY: Mapping[tuple[BlockerKind, Strategy], str] = {
    (BlockerKind.NO_TOOLS, Strategy.POWER_OFF): (
        "VMware Tools are not running: a guest shutdown needs them, and a hard power-off "
        "would only be crash-consistent"
    ),
    (BlockerKind.INDEPENDENT_DISK, Strategy.MEMORY): (
        "{blocker}; VMware refuses memory snapshots of VMs with independent disks"
    ),
}

# Facts that do not rule a rung out but make the result less than it seems.
_CAVEATS: Mapping[BlockerKind, str] = {
    BlockerKind.INDEPENDENT_DISK: "its data is only crash-consistent in the ZFS snapshot",
    BlockerKind.CONSOLIDATION_NEEDED: "a new VMware snapshot adds to that chain",
}


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
) -> Resolution:
    """Decide what to try for ``vm``: pure and deterministic.

    ``mapping_ids`` are the mappings through which the VM was found (for mapping scopes).
    """
    policy = select_policy(vm, blockers, policies, mapping_ids=mapping_ids)
    chosen = policy.ladder if policy is not None else default
    label = f"policy '{policy.name}'" if policy is not None else "default policy"
    rungs = chosen.rungs
    pruned: list[PrunedRung] = []
    notes: list[str] = []

    if rungs == (Strategy.EXCLUDE,):
        ladder, expected, summary = rungs, Consistency.EXCLUDED, f"excluded ({label})"
    elif vm.power_state is not PowerState.ON:
        ladder, expected = (), Consistency.POWERED_OFF
        state = "suspended" if vm.power_state is PowerState.SUSPENDED else "powered off"
        summary = f"{state}: its disks are consistent as they are, nothing to do ({label})"
    else:
        pruned = [p for p in (_prune(r, blockers, label) for r in rungs) if p is not None]
        gone = {p.rung for p in pruned}
        ladder = tuple(r for r in rungs if r not in gone) or (Strategy.CRASH,)
        expected = RUNG_CONSISTENCY[ladder[0]]
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


def _prune(rung: Strategy, blockers: Sequence[Blocker], label: str) -> PrunedRung | None:
    causes = []
    for blocker in blockers:
        if rung in PRUNED_BY.get(blocker.kind, ()):
            words = describe_blocker(blocker)
            causes.append(_WHY.get((blocker.kind, rung), "{blocker}").format(blocker=words))
    if not causes:
        return None
    return PrunedRung(rung, f"{rung.value} pruned: {'; '.join(dict.fromkeys(causes))} ({label})")


def describe_blocker(blocker: Blocker) -> str:
    """Plain words for a blocker: the selection module's detail ("PCI passthrough device
    'pcipassthrough-0'"), or words for its kind when it gave none."""
    return blocker.detail.strip() or _KIND_WORDS.get(blocker.kind, blocker.kind.value)


def _caveats(ladder: tuple[Strategy, ...], blockers: Sequence[Blocker]) -> list[str]:
    if not _SNAPSHOT.intersection(ladder):
        return []
    notes = [
        f"{describe_blocker(b)} ({_CAVEATS[b.kind]})" for b in blockers if b.kind in _CAVEATS
    ]
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
