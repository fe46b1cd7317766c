"""The begin phase: every VM's ladder, in parallel within the limits, within the deadline.

Each rung that asks something of the hypervisor is journaled (an intent, durable) before
its strategy runs, and updated when it ends; a rung that did not end keeps its intent open
so end or reconcile finds out what happened. When the begin deadline passes, every VM not
done yet is reported crash-consistent and the ZFS snapshot goes ahead: late workers only
write the journal. Afterwards, strategies that read back (quiesce) are verified in one
batched call per endpoint.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable

from ..domain.manifest import Attempt, VmOutcome
from ..domain.model import Consistency, Strategy
from ..domain.resolution import Resolution
from ..domain.selection import VmPlan
from ..domain.strategies import STRATEGIES
from ..domain.strategies.base import ActionKind, Step, StrategyModule, Verdict
from .context import RunContext, snapshot_name
from .journal import ActionState, JournalError
from .limits import Slots, SlotTimeout
from .operations import VmOperations
from .parts import Parts
from .planning import endpoints_for, resolved_plan
from .ports import Hypervisor, describe
from .sessions import connect_all
from .workers import Workers, bounded

log = logging.getLogger(__name__)

Work = tuple[VmPlan, Resolution, VmOutcome]


class _Run:
    """In-process state of one begin phase, shared by its worker threads."""

    def __init__(self, run_id: str, deadline: float, limit_s: float) -> None:
        self.run_id = run_id
        self.deadline = deadline
        self.limit_s = limit_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.frozen: set[int] = set()   # outcomes begin already reported (deadline)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def begin(parts: Parts, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
          detached: bool = False, run_id: str | None = None, hook_key: str | None = None,
          deadline_s: float | None = None) -> RunContext:
    """Take every VMware snapshot the plan asks for; return within the begin deadline.

    ``detached``: another process will call ``end``, so the run is alive while it is young
    rather than while this process lives. ``run_id``: begin is idempotent: a run that
    already began returns its context and takes nothing again. ``hook_key``: what a pre
    hook was given, for its post hook to find exactly this run. ``deadline_s``: a shorter
    begin deadline than the configured one (a scheduler's hook timeout).

    Raises ``JournalError`` only when the run cannot even be recorded: then nothing was
    done to any VM. Every later failure is a VM's or an endpoint's, in the context.
    """
    if run_id is not None:
        record = parts.journal.run(run_id)
        if record is not None and record.context:
            return RunContext.from_dict(record.context)
    started = time.monotonic()
    limit = min(parts.config.begin_deadline_s, parts.config.begin_deadline_s if deadline_s is None
                else deadline_s)
    run = _Run(run_id or uuid.uuid4().hex[:16], started + limit, limit)
    exclude = sorted(set(exclude))
    parts.journal.start_run(run.run_id, dataset, recursive, parts.clock(),
                            owner_pid=None if detached else os.getpid(), hook_key=hook_key)
    context = RunContext(run.run_id, dataset, recursive, exclude, parts.clock(), [], {}, [])
    try:
        _begin(parts, run, context)
    except Exception as exc:  # noqa: BLE001 - begin must never stop the ZFS snapshot
        log.exception("run %s: begin failed", run.run_id)
        context.endpoint_errors["engine"] = f"begin failed: {describe(exc)}"
    context.begin_seconds = time.monotonic() - started
    try:
        parts.journal.save_context(run.run_id, context.to_dict())
    except JournalError as exc:   # the ZFS snapshot goes ahead; end works from this context
        log.error("run %s: %s", run.run_id, exc)
        context.warnings.append(str(exc))
    return context


def _begin(parts: Parts, run: _Run, context: RunContext) -> None:
    endpoints = endpoints_for(parts, context.dataset, context.recursive, context.exclude)
    sessions, inventories, errors = connect_all(parts.connector, endpoints, run.deadline)
    parts.sessions.keep(run.run_id, sessions)
    context.endpoint_errors.update(errors)
    plan = resolved_plan(parts, context.dataset, context.recursive, context.exclude, inventories.values())
    context.warnings = list(plan.warnings)
    work: list[Work] = []
    for vp in plan.vms:
        res: Resolution = vp.policy  # type: ignore[assignment]
        outcome = VmOutcome(
            endpoint_id=vp.facts.endpoint_id, moref=vp.facts.moref, name=vp.facts.name,
            instance_uuid=vp.facts.instance_uuid, host=vp.facts.host,
            datastores=list(vp.facts.datastores), mapping_ids=list(vp.mapping_ids),
            policy=res.policy_label, ladder=list(res.ladder), required=res.required,
            reasons=[*(p.reason for p in res.pruned), *res.notes], provider=vp.facts.provider,
            vmx_path=vp.facts.vmx_path, disk_files=[d.file for d in vp.facts.disks])
        context.vms.append(outcome)
        if not res.ladder:
            outcome.consistency = Consistency.POWERED_OFF
            outcome.reasons.insert(0, vp.status_reason)
        elif STRATEGIES[res.ladder[0]].alone:   # exclude: not touched at all
            outcome.consistency, outcome.achieved = STRATEGIES[res.ladder[0]].yields, res.ladder[0]
            outcome.reasons.insert(0, f"excluded ({res.policy_label})")
        else:
            work.append((vp, res, outcome))
    _execute(parts, run, sessions, work)
    _read_back(run, sessions, [o for _, _, o in work])


def _execute(parts: Parts, run: _Run, sessions: dict[str, Hypervisor], work: list[Work]) -> None:
    if not work:
        return
    slots = Slots(parts.config.limits)
    with Workers(parts.config.limits.total, f"run-{run.run_id}") as workers:
        futures = {workers.submit(_walk_ladder, parts, run, sessions[vp.facts.endpoint_id], slots, vp, res,
                                  outcome): outcome for vp, res, outcome in work}
        _, pending = concurrent.futures.wait(futures, timeout=max(0.0, run.remaining()))
        run.stop.set()
        with run.lock:  # from here on, late workers only write the journal
            for future in pending:
                outcome = futures[future]
                run.frozen.add(id(outcome))
                outcome.consistency, outcome.achieved = Consistency.CRASH, None
                outcome.reasons.append(
                    f"crash-consistent: the begin deadline of {run.limit_s:g} s "
                    "passed before VMware answered (a late snapshot is removed by end or reconcile)")


def _walk_ladder(parts: Parts, run: _Run, hv: Hypervisor, slots: Slots, vp: VmPlan, res: Resolution,
                 outcome: VmOutcome) -> None:
    """Try the VM's rungs in order until one works; record every attempt."""
    vm_deadline = time.monotonic() + min(res.options.deadline_seconds or parts.config.vm_deadline_s,
                                         parts.config.vm_deadline_s)
    deadline = min(vm_deadline, run.deadline)
    attempts: list[Attempt] = []
    achieved: StrategyModule | None = None
    made: tuple[str, str, float] | None = None
    answer: Step | None = None
    try:
        with slots.hold(vp.facts.host, vp.facts.datastores, deadline):
            for rung in res.ladder:
                module = STRATEGIES[rung]
                if module.action is None:   # asks nothing of VMware: reachable even past a deadline
                    achieved = module
                    break
                if run.stop.is_set() or time.monotonic() >= deadline:
                    attempts.append(Attempt(rung, "skipped", message="deadline reached"))
                    continue
                attempt, made, answer = _attempt(parts, run, hv, vp, res, module, deadline)
                attempts.append(attempt)
                if attempt.result == "ok":
                    achieved = module
                    break
    except SlotTimeout as exc:
        attempts.append(Attempt(res.ladder[0], "skipped", message=str(exc)))
    except Exception as exc:  # noqa: BLE001 - one VM's failure stays that VM's
        log.exception("run %s: VM %s", run.run_id, vp.facts.name)
        attempts.append(Attempt(res.ladder[0], "failed", type(exc).__name__, describe(exc)))
    with run.lock:
        if id(outcome) in run.frozen:
            return  # begin already reported this VM; the journal holds the rest
        outcome.attempts = attempts
        _settle(outcome, res, achieved, attempts, made)
        if achieved is not None and answer is not None:
            _judge(outcome, achieved, answer)
    parts.progress(f"{outcome.name}: {outcome.consistency.value}", outcome)


def _attempt(parts: Parts, run: _Run, hv: Hypervisor, vp: VmPlan, res: Resolution, module: StrategyModule,
             deadline: float) -> tuple[Attempt, tuple[str, str, float] | None, Step | None]:
    """One rung: journaled before the strategy acts, updated as it ended. Returns the attempt,
    the snapshot it made (name, id, latency) and, when it worked, the hypervisor's answer."""
    assert module.action is not None
    name = snapshot_name(run.run_id) if module.action is ActionKind.SNAPSHOT else None
    action = parts.journal.intent(run.run_id, vp.facts.endpoint_id, vp.facts.moref, vp.facts.name,
                                  module.action, module.name, parts.clock(), snapshot_name=name)
    ops = VmOperations(hv, vp.facts.moref, name, deadline=deadline, description=(
        f"Taken by truenas-vmware-coord run {run.run_id} for a ZFS snapshot; removed automatically."))
    started = time.monotonic()
    step = module.apply(ops, res.options)
    latency = time.monotonic() - started
    try:
        if step.ok:
            parts.journal.update(action, ActionState.DONE, parts.clock(), snapshot_moref=step.result)
        elif step.cancelled or (step.state == "failed" and not module.failure_may_linger):
            parts.journal.update(action, ActionState.FAILED, parts.clock(), error=step.message)
        # Otherwise the intent stays open: end and reconcile find out what really happened.
    except JournalError as exc:   # the intent is open: end finds the result from the context
        log.error("run %s: VM %s: %s", run.run_id, vp.facts.name, exc)
    if step.ok:
        made = (name, str(step.result), latency) if name is not None else None
        return Attempt(module.name, "ok", latency_s=latency), made, step
    return Attempt(module.name, step.state, step.fault_type, step.message, latency), None, None


def _settle(outcome: VmOutcome, res: Resolution, achieved: StrategyModule | None, attempts: list[Attempt],
            snapshot: tuple[str, str, float] | None) -> None:
    """Write the VM's result and the reasons a person reads."""
    for a in attempts:
        if a.result != "ok":
            what = a.message or a.fault_type or a.result
            outcome.reasons.append(f"{a.strategy.value} {a.result.replace('_', ' ')}: {what}")
    if achieved is None:
        outcome.consistency, outcome.achieved = Consistency.CRASH, None
        outcome.reasons.append(f"crash-consistent: no rung of the ladder worked ({res.policy_label})")
        return
    outcome.achieved, outcome.consistency = achieved.name, achieved.yields
    if snapshot is not None:
        outcome.snapshot_name, outcome.snapshot_moref, outcome.create_latency_s = snapshot
    if achieved.name is Strategy.CRASH:
        if res.configured[0] is Strategy.CRASH:
            outcome.reasons.append(f"crash-consistent by policy ({res.policy_label})")
        else:
            outcome.reasons.append(f"crash-consistent: '{res.configured[0].value}' was not "
                                   f"possible ({res.policy_label})")


def _judge(outcome: VmOutcome, module: StrategyModule, step: Step) -> None:
    """What the hypervisor answered, read back at once (a guest agent that froze nothing)."""
    outcome.answer = module.answered(step)
    verdict = module.judge(step)
    if verdict is not None:
        _apply_verdict(outcome, verdict)


def _apply_verdict(outcome: VmOutcome, verdict: Verdict) -> None:
    if verdict.attempt_result and outcome.attempts:
        outcome.attempts[-1].result = verdict.attempt_result
    outcome.consistency = verdict.consistency
    outcome.reasons.append(verdict.reason)


def _read_back(run: _Run, sessions: dict[str, Hypervisor], outcomes: list[VmOutcome]) -> None:
    """Ask VMware what it really did: a quiesce it silently ignored is not a quiesce."""
    by_endpoint: dict[str, list[VmOutcome]] = defaultdict(list)
    for o in outcomes:
        if o.achieved is not None and STRATEGIES[o.achieved].reads_back and o.snapshot_moref:
            by_endpoint[o.endpoint_id].append(o)
    for endpoint_id, items in by_endpoint.items():
        try:
            states = bounded(lambda hv=sessions[endpoint_id], items=items:
                             hv.vm_states(o.moref for o in items), run.remaining())
        except Exception as exc:  # noqa: BLE001 - unverifiable means not claimed
            states = {}
            log.warning("run %s: read-back on %s failed: %s", run.run_id, endpoint_id, describe(exc))
        for o in items:
            state = states.get(o.moref)
            snap = next((s for s in (state.snapshots if state else ()) if s.moref == o.snapshot_moref), None)
            o.quiesced = snap.quiesced if snap else None
            verdict = STRATEGIES[o.achieved].verify(snap) if o.achieved is not None else None
            if verdict is not None:
                _apply_verdict(o, verdict)
