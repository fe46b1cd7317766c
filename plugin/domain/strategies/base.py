"""What a strategy is: the one interface every strategy module implements.

A strategy says what it yields when it works, which blockers rule it out and why, which
privileges it needs, what the journal must remember to undo it, how it runs and how it is
undone. It runs through ``Operations`` and is undone through ``UndoOperations``: the
engine implements both, journaling each operation before it reaches the hypervisor and
bounding it by the VM's deadline, so a strategy holds no I/O and no durability rules of
its own. Each strategy also says which kinds of hypervisor (``providers``) it works on: a
VMware snapshot means nothing to a libvirt guest, a guest-agent freeze nothing to VMware.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Mapping
from typing import ClassVar, Protocol

from ..model import BlockerKind, Consistency, PowerState, Provider, SnapshotFacts, Strategy
from .options import LadderOptions, VssContext


class ActionKind(enum.StrEnum):
    """What a journal row must undo (several strategies may share one kind)."""

    SNAPSHOT = "snapshot"
    POWER_OFF = "power_off"
    SUSPEND = "suspend"
    FREEZE = "freeze"      # a guest's file systems frozen by its agent: thawed by undo
    PAUSE = "pause"        # a guest's vCPUs paused: resumed by undo


@dataclasses.dataclass(frozen=True)
class Step:
    """One hypervisor operation as the engine saw it end."""

    state: str                      # ok | failed | timed_out
    result: str | None = None       # e.g. the created snapshot's id
    fault_type: str | None = None   # the hypervisor's name for the failure, for reports
    message: str | None = None
    gone: bool = False              # failed because the object does not exist
    cancelled: bool = False         # timed out, then cancelled for certain: nothing happened

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclasses.dataclass(frozen=True)
class Undone:
    """How undoing one journaled action ended: a word for the manifest, and whether the
    journal row may be closed (else reconcile retries it)."""

    word: str                       # removed | remove_failed | powered_on | still_running | thawed | ...
    closed: bool
    error: str | None = None
    # What undoing found out about the run's result (a thaw that found the guest no longer
    # frozen: the freeze did not hold through the ZFS snapshot).
    verdict: Verdict | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a read-back found when the strategy did not really happen as asked."""

    consistency: Consistency
    reason: str
    attempt_result: str | None = None   # e.g. "ignored": VMware took it, without quiescing


class Operations(Protocol):
    """What a strategy may ask of the hypervisor for one VM (journaled, bounded)."""

    def snapshot(self, *, memory: bool, quiesce: bool, quiesce_timeout_minutes: int | None,
                 vss_context: VssContext | None) -> Step: ...

    def shutdown_guest(self, timeout_s: float) -> Step:
        """ok once the guest is off within ``timeout_s``; timed_out if not; failed if refused."""
        ...

    def power_off(self) -> Step: ...

    def suspend(self) -> Step: ...

    def freeze(self) -> Step:
        """A guest's file systems frozen by its agent; ``result`` is how many it froze."""
        ...

    def pause(self) -> Step: ...

    def remaining_s(self) -> float:
        """Seconds left before this VM's deadline."""
        ...


class UndoOperations(Protocol):
    """What undoing may ask of the hypervisor for one VM."""

    def remove_snapshot(self, snapshot_id: str) -> Step: ...

    def snapshot_present(self, snapshot_id: str) -> bool | None:
        """Whether the snapshot still exists; None when that cannot be read."""
        ...

    def power_state(self) -> PowerState | None: ...

    def power_on(self) -> Step: ...

    def thaw(self) -> Step:
        """``result`` is how many file systems the agent thawed."""
        ...

    def resume(self) -> Step: ...


class StrategyModule(abc.ABC):
    """One strategy. Subclasses fill the class attributes and, if they act, the methods."""

    name: ClassVar[Strategy]
    yields: ClassVar[Consistency]          # what a VM's data is when the strategy worked
    summary: ClassVar[str]                 # one line for people (schemas, UI, docs)
    providers: ClassVar[frozenset[Provider]] = frozenset({Provider.VSPHERE})   # where it works
    # Blockers that rule the strategy out on a powered-on VM, with why ("{blocker}" stands
    # for the blocker's own words).
    pruned_by: ClassVar[Mapping[BlockerKind, str]] = {}
    # Facts that do not rule it out but make the result less than it seems.
    caveats: ClassVar[Mapping[BlockerKind, str]] = {}
    privileges: ClassVar[Mapping[str, str]] = {}   # vCenter privilege -> what it is needed for
    action: ClassVar[ActionKind | None] = None     # None: asks nothing of the hypervisor
    final: ClassVar[bool] = False          # always works, so nothing may follow it in a ladder
    alone: ClassVar[bool] = False          # must be the only strategy of its ladder
    # A failed attempt may still take effect (a shutdown that finishes late): keep the
    # journal row open so end or reconcile undoes it if it did.
    failure_may_linger: ClassVar[bool] = False
    reads_back: ClassVar[bool] = False     # verify() the made snapshot after the begin phase
    undo_failure: ClassVar[str] = "undo_failed"    # the manifest's word when undoing it failed

    def apply(self, ops: Operations, options: LadderOptions) -> Step:
        """Make the VM consistent; strategies that ask nothing of the hypervisor just work."""
        return Step("ok")

    def undo(self, ops: UndoOperations, snapshot_id: str | None) -> Undone:
        raise NotImplementedError(f"{self.name.value} leaves nothing to undo")

    def verify(self, snapshot: SnapshotFacts | None) -> Verdict | None:
        """After the begin phase: None when the made snapshot is what was asked for."""
        return None

    def judge(self, step: Step) -> Verdict | None:
        """Right after ``apply`` worked: None when the hypervisor's answer is what was asked for."""
        return None

    def answered(self, step: Step) -> str | None:
        """What the hypervisor answered when ``apply`` worked, in words for the manifest."""
        return None
