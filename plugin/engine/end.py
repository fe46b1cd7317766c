"""The end phase, and the undo that reconcile shares with it.

Every open journal row of the run is undone by its strategy (a snapshot removed by managed
object, never with children; a stopped VM powered on), in parallel within the limits, each
step journaled. Nothing here may stop the undo of the other rows: an endpoint that cannot
be reached, a read that fails, a strategy that raises, each leaves its rows open for
reconcile and says so in the manifest. Snapshot intents whose outcome is unknown (the
create got no answer) are settled first: the snapshot is looked up by its name.

When the journal itself fails (a full or read-only disk), the undo goes on from what the
run's context knows, every journal write is best effort, and the manifest says what could
not be recorded: a VM is never left off because a disk is full.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ..domain.strategies import STRATEGIES
from ..domain.strategies.base import ActionKind, Verdict
from .context import RunContext
from .journal import ActionRecord, ActionState, JournalError
from .limits import Slots, SlotTimeout
from .operations import UndoVmOperations
from .parts import Parts
from .ports import Hypervisor, describe
from .sessions import close_within, open_within
from .workers import Workers, bounded

log = logging.getLogger(__name__)

IN_DOUBT = "in_doubt"   # the manifest's word for a create that may still land
Placement = dict[tuple[str, str], tuple[str | None, tuple[str, ...]]]   # VM -> (host, datastores)
Undone = list[tuple[ActionRecord, str]]


def end(parts: Parts, context: RunContext | str, snapshot: str | None = None,
        notes: Iterable[str] = (), problems: dict[str, str] | None = None) -> dict[str, Any]:
    """Undo everything this run did; return the final manifest (also stored), with ``notes``
    (what the caller knows about the snapshot) among its warnings and ``problems`` (what
    makes the snapshot not VM-consistent beyond the VMs, e.g. children snapshotted that were
    not prepared) beside the endpoint errors: they make vmsynced false."""
    run_id = context if isinstance(context, str) else context.run_id
    warnings: list[str] = list(notes)
    try:
        record = parts.journal.run(run_id)
    except JournalError:
        if isinstance(context, str):
            raise   # nothing else knows what this run did
        record = None
    if record is not None and record.ended and record.manifest:
        return record.manifest   # idempotent: an ended run is not undone twice
    if isinstance(context, str):
        if record is None or record.context is None:
            raise KeyError(f"no run {context!r} in the journal")
        context = RunContext.from_dict(record.context)
    context.endpoint_errors.update(problems or {})
    if snapshot:
        context.snapshot = snapshot
        _best_effort(warnings, parts.journal.set_snapshot, context.run_id, snapshot)
    deadline = time.monotonic() + parts.config.end_deadline_s
    sessions = parts.sessions.take(context.run_id)
    by_vm = {(o.endpoint_id, o.moref): o for o in context.vms}
    placement = {key: (o.host, tuple(o.datastores)) for key, o in by_vm.items()}
    try:
        actions = parts.journal.actions(context.run_id, open_only=True)
    except JournalError as exc:
        warnings.append(f"{exc}; undoing what the run's context knows (late operations of VMs past "
                        "the begin deadline are left to reconcile's marker sweep)")
        actions = _actions_from_context(context)
    found_out: dict[tuple[str, str], Verdict] = {}
    try:
        undone, consolidation, _unreachable = undo(parts, actions, sessions, deadline, placement, found_out)
    finally:
        for hv in sessions.values():
            close_within(hv)
    for action, word in undone:
        outcome = by_vm.get((action.endpoint_id, action.vm_moref))
        if outcome is not None:
            outcome.undo = word
    for key, verdict in found_out.items():
        if key in by_vm and by_vm[key].consistency.rank > verdict.consistency.rank:
            by_vm[key].consistency = verdict.consistency
            by_vm[key].reasons.append(verdict.reason)
    # Each snapshot's own life, from the journal: created (done) until removed (closed).
    for action in _best_effort(warnings, parts.journal.actions, context.run_id) or ():
        outcome = by_vm.get((action.endpoint_id, action.vm_moref))
        if (outcome is not None and action.kind is ActionKind.SNAPSHOT and action.done_at
                and action.closed_at and action.state is ActionState.CLOSED):
            outcome.lifetime_s = action.closed_at - action.done_at
    for key, needed in consolidation.items():
        if key in by_vm:
            by_vm[key].consolidation_needed = needed
            if needed:
                by_vm[key].reasons.append("VMware reports that its disks need consolidation")
    report = context.to_dict()
    report["ended_at"] = parts.clock()
    report["leftovers"] = [f"{a.vm_name}: {word}" for a, word in undone
                           if word in (STRATEGIES[a.strategy].undo_failure, IN_DOUBT)]
    report["in_doubt"] = sorted(a.vm_name for a, word in undone if word == IN_DOUBT)
    report["warnings"] = list(dict.fromkeys([*report["warnings"], *warnings]))
    _best_effort(report["warnings"], parts.journal.end_run, context.run_id, report, parts.clock())
    prune(parts)
    return report


def prune(parts: Parts) -> None:
    """Keep the journal within its retention (never a run that is not finished)."""
    try:
        parts.journal.prune(parts.clock(), parts.config.retention_days, parts.config.retention_runs)
    except JournalError as exc:   # a journal too big is a problem for later, not for this run
        log.warning("pruning the journal failed: %s", exc)


def _best_effort(warnings: list[str], call: Any, *args: Any) -> Any:
    """A journal call whose failure is reported, not raised: the undo matters more."""
    try:
        return call(*args)
    except JournalError as exc:
        log.error("%s", exc)
        if str(exc) not in warnings:
            warnings.append(str(exc))
        return None


def _actions_from_context(context: RunContext) -> list[ActionRecord]:
    """What the context knows this run did (the journal could not be read): id 0 rows."""
    found = []
    for o in context.vms:
        module = STRATEGIES[o.achieved] if o.achieved is not None else None
        if module is None or module.action is None or (module.action is ActionKind.SNAPSHOT
                                                        and not o.snapshot_moref):
            continue
        found.append(ActionRecord(
            id=0, run_id=context.run_id, endpoint_id=o.endpoint_id, vm_moref=o.moref, vm_name=o.name,
            kind=module.action, strategy=module.name, state=ActionState.DONE, snapshot_name=o.snapshot_name,
            snapshot_moref=o.snapshot_moref, error=None, created_at=context.started_at, done_at=None,
            closed_at=None))
    return found


def _record(parts: Parts, action: ActionRecord, state: ActionState, **fields: Any) -> None:
    """Journal how an action ended, if it is in the journal and the journal can be written."""
    if action.id == 0:
        return
    try:
        parts.journal.update(action.id, state, parts.clock(), **fields)
    except JournalError as exc:   # the row stays open: reconcile sees it again and finds it done
        log.error("%s (recording %s of %s)", exc, state.value, action.vm_name)


def undo(parts: Parts, actions: list[ActionRecord], sessions: dict[str, Hypervisor], deadline: float,
         placement: Placement | None = None, found_out: dict[tuple[str, str], Verdict] | None = None
         ) -> tuple[Undone, dict[tuple[str, str], bool], set[str]]:
    """Undo each action, journaling each step; then ask VMware, once per endpoint, whether
    the VMs whose snapshots were removed need consolidation. Also returns the endpoints no
    session could be opened to. ``found_out`` receives, per VM, what an undo found out about
    the run's result (a guest no longer frozen at its thaw). Nothing here waits past the
    deadline: an undo still without an answer then is left open (it may still land, and is
    recorded if it does)."""
    if not actions:
        return [], {}, set()
    unreachable: set[str] = set()
    placement = placement or {}
    undoing = _Undoing(parts, Slots(parts.config.limits), deadline, {} if found_out is None else found_out)
    by_endpoint: dict[str, list[ActionRecord]] = defaultdict(list)
    for a in actions:
        by_endpoint[a.endpoint_id].append(a)
    opened: list[Hypervisor] = []
    results: Undone = []
    try:
        with Workers(parts.config.limits.total, "undo") as workers:
            futures: dict[concurrent.futures.Future[tuple[ActionRecord, str]], ActionRecord] = {}
            for endpoint_id, items in by_endpoint.items():
                hv = sessions.get(endpoint_id)
                if hv is None:
                    try:
                        hv = open_within(parts.connector, endpoint_id, _left(deadline))
                        opened.append(hv)
                    except Exception as exc:  # noqa: BLE001 - left for reconcile
                        unreachable.add(endpoint_id)
                        results += [_left_open(parts, a, describe(exc)) for a in items]
                        continue
                items, unsettled = _settle_in_doubt(parts, hv, items, deadline)
                results += [_left_open(parts, a, why, IN_DOUBT) for a, why in unsettled]
                futures |= {workers.submit(undoing.one, hv, a,
                                           placement.get((a.endpoint_id, a.vm_moref), (None, ()))): a
                            for a in items}
            done, _ = concurrent.futures.wait(futures, timeout=_left(deadline))
            workers.stop()   # what has not started by now is not started
            for future in done:
                try:
                    results.append(future.result())
                except Exception as exc:  # noqa: BLE001 - one row's surprise stays that row's
                    log.exception("undoing %s failed", futures[future].vm_name)
                    results.append(_left_open(parts, futures[future], describe(exc)))
            results += undoing.give_up([a for f, a in futures.items() if f not in done])
        everyone = {**{hv.endpoint_id: hv for hv in opened}, **sessions}
        consolidation = _consolidation(results, everyone, deadline)
    finally:
        for hv in opened:
            close_within(hv)
    return results, consolidation, unreachable


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class _Undoing:
    """The undo of one end or reconcile, shared by its workers. At the deadline the phase
    stops waiting (``give_up``); an undo that ends after that still journals how it ended,
    which is the truth, but no longer tells the phase, which has reported already."""

    def __init__(self, parts: Parts, slots: Slots, deadline: float,
                 found_out: dict[tuple[str, str], Verdict]) -> None:
        self._parts = parts
        self._slots = slots
        self._deadline = deadline
        self._found_out = found_out
        self._lock = threading.Lock()
        self._ended: set[int] = set()   # id() of the actions whose end a worker journals
        self._given_up = False

    def one(self, hv: Hypervisor, action: ActionRecord, where: tuple[str | None, tuple[str, ...]]
            ) -> tuple[ActionRecord, str]:
        try:
            with self._slots.hold(where[0], where[1], self._deadline):
                module = STRATEGIES[action.strategy]
                operations = UndoVmOperations(hv, action.vm_moref, self._deadline)
                undone = module.undo(operations, action.snapshot_moref)
        except SlotTimeout as exc:
            self._ending(action)
            return _left_open(self._parts, action, str(exc))
        self._ending(action, undone.verdict)
        # Journaled outside the lock, so that the group commit batches the workers' writes.
        if undone.closed:
            _record(self._parts, action, ActionState.CLOSED)
        else:
            _record(self._parts, action, ActionState.UNDO_FAILED, error=undone.error)
        return action, undone.word

    def _ending(self, action: ActionRecord, verdict: Verdict | None = None) -> None:
        """The action's end is this worker's to journal: ``give_up`` now leaves it alone,
        or has journaled its own word already, which this worker's then follows. The
        verdict reaches the phase only while it still listens."""
        with self._lock:
            self._ended.add(id(action))
            if verdict is not None and not self._given_up:
                self._found_out[(action.endpoint_id, action.vm_moref)] = verdict

    def give_up(self, unfinished: list[ActionRecord]) -> Undone:
        """The undos still without an answer at the deadline: left open for reconcile."""
        with self._lock:
            self._given_up = True
            return [_left_open(self._parts, a, "no answer from the hypervisor before the clean-up "
                               "deadline; the call may still land") for a in unfinished
                    if id(a) not in self._ended]


def _left_open(parts: Parts, action: ActionRecord, error: str, word: str | None = None
               ) -> tuple[ActionRecord, str]:
    """The row stays open for reconcile (an intent stays an intent: its outcome is unknown)."""
    still = ActionState.INTENT if action.state is ActionState.INTENT else ActionState.UNDO_FAILED
    _record(parts, action, still, error=error)
    return action, word or STRATEGIES[action.strategy].undo_failure


def _consolidation(results: Undone, hypervisors: dict[str, Hypervisor], deadline: float
                   ) -> dict[tuple[str, str], bool]:
    """runtime.consolidationNeeded of every VM whose snapshot was removed: one call each
    endpoint, within what is left of the deadline."""
    removed: dict[str, list[str]] = defaultdict(list)
    for action, word in results:
        if word == "removed":
            removed[action.endpoint_id].append(action.vm_moref)
    found: dict[tuple[str, str], bool] = {}
    for endpoint_id, morefs in removed.items():
        try:
            states = bounded(lambda hv=hypervisors[endpoint_id], m=morefs: hv.vm_states(m), _left(deadline))
        except Exception as exc:  # noqa: BLE001 - a missing answer is reported as unknown
            log.warning("consolidation check on %s failed: %s", endpoint_id, describe(exc))
            continue
        found.update({(endpoint_id, m): s.consolidation_needed for m, s in states.items()})
    return found


def _settle_in_doubt(parts: Parts, hv: Hypervisor, actions: list[ActionRecord], deadline: float
                     ) -> tuple[list[ActionRecord], list[tuple[ActionRecord, str]]]:
    """Snapshot intents whose outcome is unknown (the create got no answer): find the
    snapshot by its name. Not found, the intent is closed, unless it is younger than
    ``in_doubt_window_s``: VMware may still be working on a create whose answer was lost,
    so it stays open to be looked at again. Returns the actions to undo, and those still
    in doubt with why."""
    doubtful = [a for a in actions if a.kind is ActionKind.SNAPSHOT and not a.snapshot_moref]
    settled = [a for a in actions if a not in doubtful]
    if not doubtful:
        return settled, []
    try:
        states = bounded(lambda: hv.vm_states([a.vm_moref for a in doubtful]), _left(deadline))
    except Exception as exc:  # noqa: BLE001 - still unknown: left open for reconcile
        why = f"whether the snapshot was created could not be read: {describe(exc)}"
        return settled, [(a, why) for a in doubtful]
    claimed: set[str] = set()
    unsettled: list[tuple[ActionRecord, str]] = []
    now = parts.clock()
    for a in doubtful:
        state = states.get(a.vm_moref)
        found = [s for s in (state.snapshots if state else ())
                 if s.name == a.snapshot_name and s.moref not in claimed]
        if found:
            claimed.add(found[0].moref)
            _record(parts, a, ActionState.DONE, snapshot_moref=found[0].moref)
            settled.append(dataclasses.replace(a, state=ActionState.DONE, snapshot_moref=found[0].moref))
        elif now - a.created_at < parts.config.in_doubt_window_s:
            unsettled.append((a, "the create got no answer and may still land: looked at again"))
        else:
            _record(parts, a, ActionState.CLOSED, error=a.error or "no snapshot was created")
    return settled, unsettled
