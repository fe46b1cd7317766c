"""The coordinated snapshot transaction: plan -> begin -> (ZFS snapshot) -> end; reconcile.

Invariants this module keeps (architecture.md):
- the ZFS snapshot is never held back by VMware beyond the begin deadline, and never
  prevented: every VMware failure degrades a VM to crash-consistent with a reason;
- an intent is durable in the journal before each VMware call that creates something, so
  ``end`` or ``reconcile`` removes every snapshot this product created, whatever crashed;
- only snapshots this run created are removed, by managed object, never with children;
- contexts, journal rows and manifests name endpoints by id and never hold a secret.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..domain import manifest as manifest_mod
from ..domain.manifest import Attempt, VmOutcome
from ..domain.model import Consistency, Inventory, Mapping, PowerState, Strategy
from ..domain.policy import DEFAULT_LADDER, Ladder, Policy, Resolution, resolve
from ..domain.selection import SNAPSHOT_NAME_PREFIX, Plan, Scope, VmPlan, build_plan, scope_mappings
from ..domain.storage import StorageFacts
from ..vsphere.errors import fault_message
from ..zfs.snapshot import PROP_RUN, PROP_SUMMARY, PROP_VMSYNCED
from .journal import Action, ActionKind, ActionState, Journal
from .limits import Limits, Slots, SlotTimeout
from .ports import Connector, Hypervisor, SnapshotRequest, TaskHandle

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    limits: Limits = Limits()
    vm_deadline_s: float = 60.0        # one VM's whole ladder, unless its policy says less
    begin_deadline_s: float = 90.0     # the whole begin phase: the ZFS snapshot waits no longer
    end_deadline_s: float = 300.0      # removal and power-on; what is left goes to reconcile
    active_run_max_age_s: float = 3600.0   # a begun run older than this is dead
    detached_run_max_age_s: float = 900.0  # a hook run (no owner process) is dead after this
    marker_max_age_s: float = 3600.0   # a marked snapshot of an unknown run older than this goes


@dataclasses.dataclass
class RunContext:
    """What begin hands to end: serialisable, secret-free (endpoints by id only)."""

    run_id: str
    dataset: str
    recursive: bool
    exclude: list[str]
    started_at: float
    vms: list[VmOutcome]
    endpoint_errors: dict[str, str]
    warnings: list[str]
    begin_seconds: float = 0.0
    snapshot: str | None = None

    @property
    def vmsynced(self) -> bool:
        return manifest_mod.vmsynced(self.vms, self.endpoint_errors)

    def properties(self) -> dict[str, str]:
        """User properties for the ZFS snapshot: the run id, a summary, an honest vmsynced."""
        return {PROP_RUN: self.run_id,
                PROP_SUMMARY: manifest_mod.summary(self.vms, self.endpoint_errors),
                PROP_VMSYNCED: "Y" if self.vmsynced else "N"}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dataset": self.dataset, "recursive": self.recursive,
                "exclude": list(self.exclude), "started_at": self.started_at,
                "begin_seconds": round(self.begin_seconds, 3), "snapshot": self.snapshot,
                "vmsynced": self.vmsynced, "properties": self.properties(),
                "endpoint_errors": dict(self.endpoint_errors), "warnings": list(self.warnings),
                "vms": [v.to_dict() for v in self.vms]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunContext:
        return RunContext(run_id=d["run_id"], dataset=d["dataset"], recursive=d["recursive"],
                          exclude=list(d.get("exclude", ())), started_at=d["started_at"],
                          vms=[VmOutcome.from_dict(v) for v in d.get("vms", ())],
                          endpoint_errors=dict(d.get("endpoint_errors", {})),
                          warnings=list(d.get("warnings", ())),
                          begin_seconds=d.get("begin_seconds", 0.0), snapshot=d.get("snapshot"))


def snapshot_name(run_id: str) -> str:
    return f"{SNAPSHOT_NAME_PREFIX}{run_id}"


def run_id_of(snapshot: str) -> str | None:
    return snapshot[len(SNAPSHOT_NAME_PREFIX):] if snapshot.startswith(SNAPSHOT_NAME_PREFIX) else None


_RUNG_CONSISTENCY = {Strategy.QUIESCE: Consistency.QUIESCED, Strategy.MEMORY: Consistency.MEMORY,
                     Strategy.POWER_OFF: Consistency.POWERED_OFF,
                     Strategy.SUSPEND: Consistency.POWERED_OFF}


class _Run:
    """In-process state of one begin phase, shared by its worker threads."""

    def __init__(self, run_id: str, deadline: float) -> None:
        self.run_id = run_id
        self.deadline = deadline
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.frozen: set[int] = set()   # outcomes begin already reported (deadline)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Coordinator:
    """Owns the transaction. Talks to ports only: a Connector, a Journal, a clock."""

    def __init__(self, connector: Connector, journal: Journal, mappings: Sequence[Mapping],
                 storage: Callable[[], StorageFacts], policies: Sequence[Policy] = (),
                 default_ladder: Ladder = DEFAULT_LADDER, config: EngineConfig = EngineConfig(),
                 clock: Callable[[], float] = time.time,
                 progress: Callable[[str, VmOutcome | None], None] | None = None) -> None:
        self.connector = connector
        self.journal = journal
        self.mappings = list(mappings)
        self.storage = storage
        self.policies = list(policies)
        self.default_ladder = default_ladder
        self.config = config
        self.clock = clock
        self.progress = progress or (lambda message, outcome: None)
        self._sessions: dict[str, dict[str, Hypervisor]] = {}   # run id -> endpoint -> open

    # --- plan ----------------------------------------------------------------------------

    def _endpoints_for(self, dataset: str, recursive: bool, exclude: Iterable[str]) -> list[str]:
        scope = Scope(dataset, recursive, tuple(sorted(set(exclude))))
        return sorted({m.endpoint_id for m in scope_mappings(self.mappings, scope)})

    def _connect_all(self, endpoint_ids: Iterable[str], deadline: float
                     ) -> tuple[dict[str, Hypervisor], dict[str, Inventory], dict[str, str]]:
        """Open every endpoint and read its inventory in parallel, within the deadline."""
        sessions: dict[str, Hypervisor] = {}
        inventories: dict[str, Inventory] = {}
        errors: dict[str, str] = {}

        def connect(endpoint_id: str) -> tuple[Hypervisor, Inventory]:
            hv = self.connector.open(endpoint_id)
            try:
                return hv, hv.inventory()
            except BaseException:
                hv.close()
                raise

        ids = list(endpoint_ids)
        if not ids:
            return sessions, inventories, errors
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(ids), thread_name_prefix="connect")
        futures = {pool.submit(connect, e): e for e in ids}
        done, pending = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in done:
            endpoint_id = futures[future]
            try:
                sessions[endpoint_id], inventories[endpoint_id] = future.result()
            except Exception as exc:  # noqa: BLE001 - an endpoint lost, the run goes on
                errors[endpoint_id] = fault_message(exc)
        for future in pending:
            errors[futures[future]] = "no answer before the begin deadline"
            # A late session is closed by its thread as soon as it arrives.
            future.add_done_callback(_close_late_session)
        pool.shutdown(wait=False)
        return sessions, inventories, errors

    def _resolve(self, plan: Plan, policies: Sequence[Policy] | None = None) -> Plan:
        rules = [p for p in policies if p.enabled] if policies is not None else self.policies
        vms = tuple(dataclasses.replace(
            v, policy=resolve(v.facts, v.blockers, rules, self.default_ladder,
                              mapping_ids=v.mapping_ids)) for v in plan.vms)
        return dataclasses.replace(plan, vms=vms)

    def plan(self, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
             policies: Sequence[Policy] | None = None) -> tuple[Plan, dict[str, str]]:
        """The dry run: what a snapshot of ``dataset`` would do to each VM, changing nothing.

        ``policies`` replaces the configured ones: what an unsaved policy would change.
        """
        deadline = time.monotonic() + self.config.begin_deadline_s
        sessions, inventories, errors = self._connect_all(
            self._endpoints_for(dataset, recursive, exclude), deadline)
        for hv in sessions.values():
            hv.close()
        plan = build_plan(dataset, inventories=inventories.values(), mappings=self.mappings,
                          storage=self.storage(), now=self.clock(), recursive=recursive,
                          exclude=exclude)
        return self._resolve(plan, policies), errors

    # --- begin ---------------------------------------------------------------------------

    def begin(self, dataset: str, recursive: bool = False, exclude: Iterable[str] = (),
              detached: bool = False, run_id: str | None = None) -> RunContext:
        """Take every VMware snapshot the plan asks for; return within the begin deadline.

        ``detached``: another process will call ``end`` (pre/post snapshot hooks), so the run
        is alive while it is young rather than while this process lives. ``run_id``: begin
        is idempotent: a run that already began returns its context and takes nothing again.
        """
        if run_id is not None:
            row = self.journal.run(run_id)
            if row is not None and row.get("context"):
                return RunContext.from_dict(row["context"])
        started = time.monotonic()
        run = _Run(run_id or uuid.uuid4().hex[:16], started + self.config.begin_deadline_s)
        exclude = sorted(set(exclude))
        self.journal.start_run(run.run_id, dataset, recursive, self.clock(),
                               owner_pid=None if detached else os.getpid())
        context = RunContext(run.run_id, dataset, recursive, exclude, self.clock(), [], {}, [])
        try:
            self._begin(run, context)
        except Exception as exc:  # noqa: BLE001 - begin must never stop the ZFS snapshot
            log.exception("run %s: begin failed", run.run_id)
            context.endpoint_errors["engine"] = f"begin failed: {type(exc).__name__}: {exc}"
        context.begin_seconds = time.monotonic() - started
        self.journal.save_context(run.run_id, context.to_dict())
        return context

    def _begin(self, run: _Run, context: RunContext) -> None:
        endpoints = self._endpoints_for(context.dataset, context.recursive, context.exclude)
        sessions, inventories, errors = self._connect_all(endpoints, run.deadline)
        self._sessions[run.run_id] = sessions
        context.endpoint_errors.update(errors)
        plan = self._resolve(build_plan(
            context.dataset, inventories=inventories.values(), mappings=self.mappings,
            storage=self.storage(), now=self.clock(), recursive=context.recursive,
            exclude=context.exclude))
        context.warnings = list(plan.warnings)
        work: list[tuple[VmPlan, Resolution, VmOutcome]] = []
        for vp in plan.vms:
            res: Resolution = vp.policy  # type: ignore[assignment]
            outcome = VmOutcome(
                endpoint_id=vp.facts.endpoint_id, moref=vp.facts.moref, name=vp.facts.name,
                instance_uuid=vp.facts.instance_uuid, host=vp.facts.host,
                datastores=list(vp.facts.datastores), mapping_ids=list(vp.mapping_ids),
                policy=res.policy_label,
                ladder=list(res.ladder), required=res.required,
                reasons=[*(p.reason for p in res.pruned), *res.notes])
            context.vms.append(outcome)
            if not res.ladder:
                outcome.consistency = Consistency.POWERED_OFF
                outcome.reasons.insert(0, vp.status_reason)
            elif res.ladder == (Strategy.EXCLUDE,):
                outcome.consistency, outcome.achieved = Consistency.EXCLUDED, Strategy.EXCLUDE
                outcome.reasons.insert(0, f"excluded ({res.policy_label})")
            else:
                work.append((vp, res, outcome))
        self._execute(run, sessions, work)
        self._read_back(run, sessions, [o for _, _, o in work])

    def _execute(self, run: _Run, sessions: dict[str, Hypervisor],
                 work: list[tuple[VmPlan, Resolution, VmOutcome]]) -> None:
        if not work:
            return
        slots = Slots(self.config.limits)
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.config.limits.total), thread_name_prefix=f"run-{run.run_id}")
        futures = {pool.submit(self._walk_ladder, run, sessions[vp.facts.endpoint_id], slots, vp,
                               res, outcome): outcome for vp, res, outcome in work}
        _, pending = concurrent.futures.wait(futures, timeout=max(0.0, run.remaining()))
        run.stop.set()
        with run.lock:  # from here on, late workers only write the journal
            for future in pending:
                outcome = futures[future]
                run.frozen.add(id(outcome))
                outcome.consistency, outcome.achieved = Consistency.CRASH, None
                outcome.reasons.append(
                    f"crash-consistent: the begin deadline of {self.config.begin_deadline_s:g} s "
                    "passed before VMware answered (a late snapshot is removed by end or reconcile)")
        pool.shutdown(wait=False)

    def _walk_ladder(self, run: _Run, hv: Hypervisor, slots: Slots, vp: VmPlan, res: Resolution,
                     outcome: VmOutcome) -> None:
        """Try the VM's rungs in order until one works; record every attempt."""
        vm_deadline = time.monotonic() + min(res.options.deadline_seconds or self.config.vm_deadline_s,
                                             self.config.vm_deadline_s)
        deadline = min(vm_deadline, run.deadline)
        attempts: list[Attempt] = []
        achieved: tuple[Strategy, Consistency] | None = None
        snapshot: tuple[str, str, float] | None = None
        try:
            with slots.hold(vp.facts.host, vp.facts.datastores, deadline):
                for rung in res.ladder:
                    # crash and exclude ask nothing of VMware: reachable even past a deadline
                    if rung is Strategy.CRASH:
                        achieved = (rung, Consistency.CRASH)
                        break
                    if rung is Strategy.EXCLUDE:
                        achieved = (rung, Consistency.EXCLUDED)
                        break
                    if run.stop.is_set() or time.monotonic() >= deadline:
                        attempts.append(Attempt(rung, "skipped", message="deadline reached"))
                        continue
                    attempt, made = self._try_rung(run, hv, vp, res, rung, deadline)
                    attempts.append(attempt)
                    if attempt.result == "ok":
                        achieved = (rung, _RUNG_CONSISTENCY[rung])
                        snapshot = made
                        break
        except SlotTimeout as exc:
            attempts.append(Attempt(res.ladder[0], "skipped", message=str(exc)))
        except Exception as exc:  # noqa: BLE001 - one VM's failure stays that VM's
            log.exception("run %s: VM %s", run.run_id, vp.facts.name)
            attempts.append(Attempt(res.ladder[0], "failed", type(exc).__name__, fault_message(exc)))
        with run.lock:
            if id(outcome) in run.frozen:
                return  # begin already reported this VM; the journal holds the rest
            outcome.attempts = attempts
            self._settle(outcome, res, achieved, attempts, snapshot)
        self.progress(f"{outcome.name}: {outcome.consistency.value}", outcome)

    def _settle(self, outcome: VmOutcome, res: Resolution,
                achieved: tuple[Strategy, Consistency] | None, attempts: list[Attempt],
                snapshot: tuple[str, str, float] | None) -> None:
        """Write the VM's result and the reasons a person reads."""
        failed = [a for a in attempts if a.result != "ok"]
        for a in failed:
            what = a.message or a.fault_type or a.result
            outcome.reasons.append(f"{a.strategy.value} {a.result.replace('_', ' ')}: {what}")
        if achieved is None:
            outcome.consistency, outcome.achieved = Consistency.CRASH, None
            outcome.reasons.append(f"crash-consistent: no rung of the ladder worked ({res.policy_label})")
            return
        outcome.achieved, outcome.consistency = achieved
        if snapshot is not None:
            outcome.snapshot_name, outcome.snapshot_moref, outcome.create_latency_s = snapshot
        if achieved[0] is Strategy.CRASH:
            if res.configured[0] is Strategy.CRASH:
                outcome.reasons.append(f"crash-consistent by policy ({res.policy_label})")
            else:
                outcome.reasons.append(f"crash-consistent: '{res.configured[0].value}' was not "
                                       f"possible ({res.policy_label})")

    def _try_rung(self, run: _Run, hv: Hypervisor, vp: VmPlan, res: Resolution, rung: Strategy,
                  deadline: float) -> tuple[Attempt, tuple[str, str, float] | None]:
        if rung in (Strategy.QUIESCE, Strategy.MEMORY):
            return self._snapshot(run, hv, vp, res, rung, deadline)
        return self._power(run, hv, vp, res, rung, deadline), None

    def _snapshot(self, run: _Run, hv: Hypervisor, vp: VmPlan, res: Resolution, rung: Strategy,
                  deadline: float) -> tuple[Attempt, tuple[str, str, float] | None]:
        name = snapshot_name(run.run_id)
        vss = res.options.vss_context.vmware_value if res.options.vss_context else None
        request = SnapshotRequest(
            vm_moref=vp.facts.moref, name=name, memory=rung is Strategy.MEMORY,
            quiesce=rung is Strategy.QUIESCE,
            description=(f"Taken by truenas-vmware-coord run {run.run_id} for a ZFS snapshot; "
                         "removed automatically."),
            quiesce_timeout_minutes=res.options.quiesce_timeout_minutes, vss_context=vss)
        action = self.journal.intent(run.run_id, vp.facts.endpoint_id, vp.facts.moref, vp.facts.name,
                                     ActionKind.SNAPSHOT, self.clock(), snapshot_name=name)
        started = time.monotonic()
        result = self._call_and_wait(hv, lambda: hv.start_snapshot(request), deadline)
        latency = time.monotonic() - started
        if result.state == "ok":
            self.journal.update(action, ActionState.DONE, self.clock(), snapshot_moref=result.result)
            return Attempt(rung, "ok", latency_s=latency), (name, str(result.result), latency)
        if result.state == "failed":
            self.journal.update(action, ActionState.FAILED, self.clock(), error=result.message)
        # timed out: the intent stays open; end and reconcile look for the snapshot by name
        return Attempt(rung, result.state, result.fault_type, result.message, latency), None

    def _power(self, run: _Run, hv: Hypervisor, vp: VmPlan, res: Resolution, rung: Strategy,
               deadline: float) -> Attempt:
        kind = ActionKind.POWER_OFF if rung is Strategy.POWER_OFF else ActionKind.SUSPEND
        action = self.journal.intent(run.run_id, vp.facts.endpoint_id, vp.facts.moref, vp.facts.name,
                                     kind, self.clock())
        started = time.monotonic()
        if rung is Strategy.SUSPEND:
            result = self._call_and_wait(hv, lambda: hv.start_suspend(vp.facts.moref), deadline)
        else:
            result = self._power_off(hv, vp, res, deadline)
        latency = time.monotonic() - started
        if result.state == "ok":
            self.journal.update(action, ActionState.DONE, self.clock())
            return Attempt(rung, "ok", latency_s=latency)
        # A shutdown that did not finish may still finish: leave the intent open, so the VM
        # is powered on again by end or reconcile if it went down after all.
        if result.state == "failed" and rung is Strategy.SUSPEND:
            self.journal.update(action, ActionState.FAILED, self.clock(), error=result.message)
        return Attempt(rung, result.state, result.fault_type, result.message, latency)

    def _power_off(self, hv: Hypervisor, vp: VmPlan, res: Resolution, deadline: float) -> _CallResult:
        timeout = min(res.options.shutdown_timeout_seconds, max(0.0, deadline - time.monotonic()))
        try:
            if hv.shutdown_guest(vp.facts.moref, timeout):
                return _CallResult("ok")
            message = f"the guest did not shut down within {timeout:.0f} s"
        except Exception as exc:  # noqa: BLE001 - e.g. ToolsUnavailable: maybe hard power-off
            message = f"guest shutdown refused: {fault_message(exc)}"
        if not res.options.hard_power_off:
            return _CallResult("failed", message=message + "; hard power-off is not allowed by policy")
        return self._call_and_wait(hv, lambda: hv.start_power_off(vp.facts.moref), deadline)

    @staticmethod
    def _call_and_wait(hv: Hypervisor, start: Callable[[], TaskHandle], deadline: float) -> _CallResult:
        try:
            handle = start()
        except Exception as exc:  # noqa: BLE001 - the call itself was refused or got no answer
            if getattr(type(exc), "_wsdlName", None):
                return _CallResult("failed", fault_type=_fault_type(exc), message=fault_message(exc))
            # No answer (timeout, dropped connection): VMware may still act on the call.
            return _CallResult("timed_out", fault_type=_fault_type(exc),
                               message=f"no answer from VMware: {fault_message(exc)}")
        outcome = hv.wait(handle, max(0.0, deadline - time.monotonic()))
        if outcome is None:
            hv.cancel(handle)
            return _CallResult("timed_out", message="VMware did not finish before the deadline")
        if outcome.ok:
            return _CallResult("ok", result=outcome.result)
        return _CallResult("failed", fault_type=outcome.fault_type, message=outcome.fault_text)

    def _read_back(self, run: _Run, sessions: dict[str, Hypervisor], outcomes: list[VmOutcome]) -> None:
        """Ask VMware what it really did: a quiesce it silently ignored is not a quiesce."""
        quiesced = [o for o in outcomes if o.achieved is Strategy.QUIESCE and o.snapshot_moref]
        by_endpoint: dict[str, list[VmOutcome]] = defaultdict(list)
        for o in quiesced:
            by_endpoint[o.endpoint_id].append(o)
        for endpoint_id, items in by_endpoint.items():
            try:
                states = _bounded(lambda hv=sessions[endpoint_id], items=items:
                                  hv.vm_states(o.moref for o in items), run.remaining())
            except Exception as exc:  # noqa: BLE001 - unverifiable means not claimed
                states = {}
                log.warning("run %s: read-back on %s failed: %s", run.run_id, endpoint_id,
                            fault_message(exc))
            for o in items:
                state = states.get(o.moref)
                snaps = state.snapshots if state else ()
                snap = next((s for s in snaps if s.moref == o.snapshot_moref), None)
                o.quiesced = snap.quiesced if snap else None
                if o.quiesced is True:
                    continue
                if o.quiesced is False and o.attempts:
                    o.attempts[-1].result = "ignored"   # VMware took it, without quiescing
                o.consistency = Consistency.CRASH
                o.reasons.append(
                    "crash-consistent: VMware ignored the quiesce request (VMware Tools not "
                    "running or not able to quiesce)" if o.quiesced is False else
                    "crash-consistent: whether the snapshot is quiesced could not be read back")

    # --- end -----------------------------------------------------------------------------

    def end(self, context: RunContext | str, snapshot: str | None = None) -> dict[str, Any]:
        """Undo everything this run did; return the final manifest (also stored)."""
        run_id = context if isinstance(context, str) else context.run_id
        row = self.journal.run(run_id)
        if row is not None and row["state"] == "ended" and row.get("manifest"):
            return row["manifest"]   # idempotent: an ended run is not undone twice
        if isinstance(context, str):
            if row is None or row.get("context") is None:
                raise KeyError(f"no run {context!r} in the journal")
            context = RunContext.from_dict(row["context"])
        if snapshot:
            context.snapshot = snapshot
            self.journal.set_snapshot(context.run_id, snapshot)
        deadline = time.monotonic() + self.config.end_deadline_s
        sessions = self._sessions.pop(context.run_id, {})
        by_vm = {(o.endpoint_id, o.moref): o for o in context.vms}
        placement = {key: (o.host, tuple(o.datastores)) for key, o in by_vm.items()}
        try:
            undone, consolidation = self._undo(self.journal.actions(context.run_id, open_only=True),
                                               sessions, deadline, placement)
        finally:
            for hv in sessions.values():
                hv.close()
        for action, result in undone:
            outcome = by_vm.get((action.endpoint_id, action.vm_moref))
            if outcome is not None:
                outcome.undo = result
        # Each snapshot's own life, from the journal: created (done) until removed (closed).
        for action in self.journal.actions(context.run_id):
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
        report["ended_at"] = self.clock()
        report["leftovers"] = [f"{a.vm_name}: {r}" for a, r in undone if r.endswith("_failed")]
        self.journal.end_run(context.run_id, report, self.clock())
        return report

    def _undo(self, actions: list[Action], sessions: dict[str, Hypervisor], deadline: float,
              placement: dict[tuple[str, str], tuple[str | None, tuple[str, ...]]] | None = None,
              ) -> tuple[list[tuple[Action, str]], dict[tuple[str, str], bool]]:
        """Remove snapshots and power VMs on again, in parallel within the limits, journaling
        each step; then ask VMware, once per endpoint, whether those VMs need consolidation."""
        consolidation: dict[tuple[str, str], bool] = {}
        if not actions:
            return [], consolidation
        placement = placement or {}
        slots = Slots(self.config.limits)
        by_endpoint: dict[str, list[Action]] = defaultdict(list)
        for a in actions:
            by_endpoint[a.endpoint_id].append(a)
        opened: list[Hypervisor] = []
        results: list[tuple[Action, str]] = []
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.limits.total),
                                                     thread_name_prefix="undo")
        try:
            futures = []
            for endpoint_id, items in by_endpoint.items():
                hv = sessions.get(endpoint_id)
                if hv is None:
                    try:
                        hv = self.connector.open(endpoint_id)
                        opened.append(hv)
                    except Exception as exc:  # noqa: BLE001 - left for reconcile
                        for a in items:
                            self.journal.update(a.id, ActionState.UNDO_FAILED, self.clock(),
                                                error=fault_message(exc))
                            results.append((a, "undo_failed"))
                        continue
                items = self._settle_in_doubt(hv, items)
                futures += [pool.submit(self._undo_within_limits, hv, a, deadline, slots,
                                        placement.get((a.endpoint_id, a.vm_moref), (None, ())))
                            for a in items]
            for future in concurrent.futures.as_completed(futures):
                results.append(future.result())
            consolidation = self._consolidation(results, sessions, opened)
        finally:
            pool.shutdown(wait=True)
            for hv in opened:
                hv.close()
        return results, consolidation

    def _undo_within_limits(self, hv: Hypervisor, action: Action, deadline: float, slots: Slots,
                            where: tuple[str | None, tuple[str, ...]]) -> tuple[Action, str]:
        try:
            with slots.hold(where[0], where[1], deadline):
                return self._undo_one(hv, action, deadline)
        except SlotTimeout as exc:
            self.journal.update(action.id, ActionState.UNDO_FAILED, self.clock(), error=str(exc))
            return action, "remove_failed" if action.kind is ActionKind.SNAPSHOT else "power_on_failed"

    @staticmethod
    def _consolidation(results: list[tuple[Action, str]], sessions: dict[str, Hypervisor],
                       opened: list[Hypervisor]) -> dict[tuple[str, str], bool]:
        """runtime.consolidationNeeded of every VM whose snapshot was removed: one call each endpoint."""
        removed: dict[str, list[str]] = defaultdict(list)
        for action, word in results:
            if word == "removed":
                removed[action.endpoint_id].append(action.vm_moref)
        found: dict[tuple[str, str], bool] = {}
        hypervisors = {**{hv.endpoint_id: hv for hv in opened}, **sessions}
        for endpoint_id, morefs in removed.items():
            try:
                states = hypervisors[endpoint_id].vm_states(morefs)
            except Exception as exc:  # noqa: BLE001 - a missing answer is reported as unknown
                log.warning("consolidation check on %s failed: %s", endpoint_id, fault_message(exc))
                continue
            found.update({(endpoint_id, m): s.consolidation_needed for m, s in states.items()})
        return found

    def _settle_in_doubt(self, hv: Hypervisor, actions: list[Action]) -> list[Action]:
        """Snapshot intents whose outcome is unknown: find the snapshot by name, or close."""
        doubtful = [a for a in actions if a.kind is ActionKind.SNAPSHOT and not a.snapshot_moref]
        if not doubtful:
            return actions
        states = hv.vm_states(a.vm_moref for a in doubtful)
        settled = [a for a in actions if a not in doubtful]
        claimed: set[str] = set()
        for a in doubtful:
            state = states.get(a.vm_moref)
            found = [s for s in (state.snapshots if state else ())
                     if s.name == a.snapshot_name and s.moref not in claimed]
            if found:
                claimed.add(found[0].moref)
                self.journal.update(a.id, ActionState.DONE, self.clock(), snapshot_moref=found[0].moref)
                settled.append(dataclasses.replace(a, state=ActionState.DONE,
                                                   snapshot_moref=found[0].moref))
            else:
                self.journal.update(a.id, ActionState.CLOSED, self.clock(),
                                    error=a.error or "no snapshot was created")
        return settled

    @staticmethod
    def _snapshot_gone(hv: Hypervisor, action: Action) -> bool:
        try:
            state = hv.vm_states([action.vm_moref]).get(action.vm_moref)
        except Exception:  # noqa: BLE001 - unknown: keep the action open
            return False
        return state is not None and all(s.moref != action.snapshot_moref for s in state.snapshots)

    def _undo_one(self, hv: Hypervisor, action: Action, deadline: float) -> tuple[Action, str]:
        if action.kind is ActionKind.SNAPSHOT:
            result = self._call_and_wait(hv, lambda: hv.start_remove(action.snapshot_moref or ""),
                                         deadline)
            gone = result.state == "ok" or result.fault_type == "ManagedObjectNotFound"
            if not gone:
                # A removal already in flight (a killed run's) may have finished it meanwhile.
                gone = self._snapshot_gone(hv, action)
            word = "removed" if gone else "remove_failed"
        else:
            state = hv.vm_states([action.vm_moref]).get(action.vm_moref)
            if state is not None and state.power_state is PowerState.ON:
                # A shutdown that never happened (refused, or still pending and given up).
                result, gone, word = _CallResult("ok"), True, "still_running"
            else:
                result = self._call_and_wait(hv, lambda: hv.start_power_on(action.vm_moref), deadline)
                gone = result.state == "ok"
                word = "powered_on" if gone else "power_on_failed"
        if gone:
            self.journal.update(action.id, ActionState.CLOSED, self.clock())
        else:
            self.journal.update(action.id, ActionState.UNDO_FAILED, self.clock(), error=result.message)
        return action, word

    # --- the whole transaction -------------------------------------------------------------

    def run(self, dataset: str, take_snapshot: Callable[[dict[str, str]], str],
            recursive: bool = False, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """begin -> take_snapshot(properties) -> end. The ZFS snapshot is always attempted."""
        context = self.begin(dataset, recursive, exclude)
        try:
            snapshot = take_snapshot(context.properties())
        finally:
            report = self.end(context)
        report["snapshot"] = snapshot
        self.journal.set_snapshot(context.run_id, snapshot)
        return report

    # --- reconcile -----------------------------------------------------------------------

    def reconcile(self, sweep: bool = True) -> dict[str, Any]:
        """Finish what dead runs left, then remove marked snapshots no live run owns."""
        with self.journal.exclusive():
            now = self.clock()
            live_runs = {r["run_id"] for r in self.journal.begun_runs() if self._is_live(r, now)}
            open_actions = [a for a in self.journal.actions(open_only=True) if a.run_id not in live_runs]
            undone, _ = self._undo(open_actions, {}, time.monotonic() + self.config.end_deadline_s)
            swept: list[str] = []
            errors: dict[str, str] = {}
            if sweep:
                swept, errors = self._sweep(live_runs)
            for row in self.journal.begun_runs():
                if row["run_id"] in live_runs:
                    continue
                still_open = self.journal.actions(row["run_id"], open_only=True)
                if not still_open:
                    report = (row.get("context") or {}) | {"finished_by": "reconcile"}
                    self.journal.end_run(row["run_id"], report, self.clock())
            return {"undone": [{"run_id": a.run_id, "vm": a.vm_name, "kind": a.kind.value, "result": r}
                               for a, r in undone],
                    "swept": swept, "endpoint_errors": errors,
                    "still_open": len(self.journal.actions(open_only=True))}

    def _is_live(self, row: dict[str, Any], now: float) -> bool:
        """Whether a run may still be ended by its owner, so reconcile must leave it alone."""
        if row["state"] != "begun":
            return False
        age = now - row["started_at"]
        pid = row.get("owner_pid")
        if pid is None:
            return age < self.config.detached_run_max_age_s
        return age < self.config.active_run_max_age_s and _process_alive(pid)

    def _sweep(self, live_runs: set[str]) -> tuple[list[str], dict[str, str]]:
        """Marked snapshots that no live run owns and the journal no longer accounts for."""
        swept: list[str] = []
        errors: dict[str, str] = {}
        now = self.clock()
        for endpoint_id in self.connector.endpoint_ids():
            try:
                hv = self.connector.open(endpoint_id)
            except Exception as exc:  # noqa: BLE001 - try again next interval
                errors[endpoint_id] = fault_message(exc)
                continue
            try:
                for moref, (name, snapshots) in hv.all_snapshots().items():
                    for snap in snapshots:
                        run_id = run_id_of(snap.name)
                        if run_id is None or run_id in live_runs:
                            continue
                        known = self.journal.run(run_id) is not None
                        if not known and now - snap.create_time < self.config.marker_max_age_s:
                            continue  # maybe another NAS's run with its own journal
                        result = self._call_and_wait(hv, lambda s=snap, hv=hv: hv.start_remove(s.moref),
                                                     time.monotonic() + self.config.end_deadline_s)
                        if result.state == "ok" or result.fault_type == "ManagedObjectNotFound":
                            swept.append(f"{name}: {snap.name}")
                        else:
                            errors[f"{endpoint_id}/{moref}"] = result.message or "removal failed"
            except Exception as exc:  # noqa: BLE001 - try again next interval
                errors[endpoint_id] = fault_message(exc)
            finally:
                hv.close()
        return swept, errors


@dataclasses.dataclass(frozen=True)
class _CallResult:
    state: str                 # ok | failed | timed_out
    result: Any = None
    fault_type: str | None = None
    message: str | None = None


def _fault_type(exc: BaseException) -> str:
    return getattr(type(exc), "_wsdlName", None) or type(exc).__name__


def _bounded(call: Callable[[], Any], timeout: float) -> Any:
    """Run a blocking call in a helper thread, giving up (not killing it) after timeout."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=max(0.1, timeout))
    finally:
        pool.shutdown(wait=False)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _close_late_session(future: concurrent.futures.Future) -> None:
    if future.exception() is None:
        future.result()[0].close()
