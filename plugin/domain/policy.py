"""Per-VM exception policies as documents: their shape, validation and canonical form.

A policy says, for the VMs it matches, which strategies to try in order (its *ladder*).
What a policy means for one VM is decided in ``resolution``; what each strategy is, in
``strategies``. Decisions recorded here (also in ``schemas/policy.json``, which users read):

- Priority: the LOWEST number is evaluated first and the first enabled policy whose scope and
  every condition hold wins, like firewall rules. Priorities are unique, so there are no
  ties; if a caller hands in duplicates anyway, the name breaks the tie so the answer stays
  deterministic.
- Names (VM names, folder paths, policy names) compare case-insensitively; the VM-name regex
  must match the whole name and is case-insensitive unless it says ``(?-i:...)``; it is an
  RE2 expression, matched in linear time (``patterns``). Managed object ids and custom
  attribute keys/values compare exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import FieldError, InvalidInput
from truenas_vmware_coord.domain.model import BlockerKind, Consistency, Provider, Strategy
from truenas_vmware_coord.domain.patterns import glob_problem, regex_problem
from truenas_vmware_coord.domain.strategies import STRATEGIES
from truenas_vmware_coord.domain.strategies.options import LadderOptions, VssContext

__all__ = ["DEFAULT_LADDER", "DEFAULT_LIBVIRT_LADDER",
           "CustomAttributeMatch", "Ladder", "LadderOptions", "MatchConditions", "Policy",
           "Scope", "VssContext", "ladder_to_dict", "options_to_dict", "parse_ladder", "parse_policy",
           "policy_to_dict"]


# --- the documents ---------------------------------------------------------------------------


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
        return STRATEGIES[self.rungs[0]].yields


DEFAULT_LADDER = Ladder(rungs=(Strategy.QUIESCE, Strategy.CRASH))
DEFAULT_LIBVIRT_LADDER = Ladder(rungs=(Strategy.FSFREEZE, Strategy.CRASH))


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
    provider: Provider | None = None


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


def parse_ladder(document: Any, *, field: str = "default_policy", provider: Provider | None = None) -> Ladder:
    """A default policy of the engine settings: ``{"ladder": [...], "options", "requires"}``;
    with ``provider``, the default of that kind of VM, so every rung must work on it."""
    schemas.validate("policy", document, field=field, definition="default_policy")
    errors = list(_ladder_problems(document, field))
    for i, rung in enumerate(document["ladder"]):
        if provider is not None and provider not in STRATEGIES[Strategy(rung)].providers:
            errors.append(FieldError(f"{field}.ladder.{i}", f"'{rung}' does not work on {provider.value} "
                                                             "VMs, whose default this is"))
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
    if match.provider is not None:
        out["provider"] = match.provider.value
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
            shutdown_timeout_seconds=int(opts.get("shutdown_timeout_seconds",
                                                  LadderOptions.shutdown_timeout_seconds)),
            hard_power_off=opts.get("hard_power_off", LadderOptions.hard_power_off),
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
        provider=Provider(match["provider"]) if match.get("provider") else None,
    )


def _int_or_none(value: Any) -> int | None:
    # JSON Schema counts 5.0 as an integer; store it as 5 so documents round-trip exactly.
    return None if value is None else int(value)


def _ladder_problems(document: Mapping[str, Any], prefix: str) -> Iterable[FieldError]:
    rungs = [STRATEGIES[Strategy(r)] for r in document["ladder"]]
    here = f"{prefix}.ladder"
    alone = next((r for r in rungs if r.alone), None)
    final = next((r for r in rungs[:-1] if r.final), None)
    if alone is not None and len(rungs) > 1:
        yield FieldError(here, f"'{alone.name.value}' must be the only strategy: an excluded VM is not "
                               "touched at all")
    elif final is not None:
        yield FieldError(here, f"'{final.name.value}' always works, so nothing may follow it")
    requires = document.get("requires")
    if requires is not None and rungs:
        best = max(rungs, key=lambda r: r.yields.rank)
        if Consistency(requires).rank > best.yields.rank:
            yield FieldError(
                f"{prefix}.requires",
                f"'{requires}' cannot be reached: the best strategy listed, '{best.name.value}', "
                f"gives '{best.yields.value}'",
            )


def _match_problems(match: Mapping[str, Any] | None, prefix: str) -> Iterable[FieldError]:
    match = match or {}
    if match.get("name_regex") is not None:
        problem = regex_problem(match["name_regex"])
        if problem:
            yield FieldError(f"{prefix}.match.name_regex", problem)
    for key in ("name_glob", "folder_glob"):
        if match.get(key) is not None:
            problem = glob_problem(match[key])
            if problem:
                yield FieldError(f"{prefix}.match.{key}", problem)
