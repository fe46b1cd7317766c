"""sanoid's and zrepl's pre/post snapshot hooks, by each scheduler's real contract.

What each scheduler passes (``shared/design/schedulers.md``, read from their sources and
run): sanoid sets ``SANOID_SCRIPT`` (pre | post), ``SANOID_TARGETS`` (the dataset),
``SANOID_SNAPNAMES`` (one snapshot name per type due, all taken after one pre) and, for
post, ``SANOID_PRE_FAILURE``; it never says whether it snapshots recursively
(``recursive = zfs``). zrepl calls one executable without arguments for both edges, with
``ZREPL_HOOKTYPE`` (pre_snapshot | post_snapshot), ``ZREPL_FS``, ``ZREPL_SNAPNAME``,
``ZREPL_DRYRUN`` and ``ZREPL_TIMEOUT``.

The pairing: pre records exactly what it was given (scheduler, dataset, snapshot names) as
the run's hook key; post ends only the run recorded under the same key, never "the newest
run of the dataset". A post that finds none labels the snapshot ``vmsynced=N`` and says
why. Every snapshot of a run is labelled; a recursive snapshot whose children were not
planned is labelled N, never a false Y.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import schemas
from ..domain.errors import FieldError, InvalidInput
from ..domain.selection import Scope, scope_mappings
from ..domain.zfs_names import dataset_problem, snapshot_problem
from ..engine.context import RunContext
from ..engine.coordinator import Coordinator
from ..engine.journal import Journal, RunRecord
from ..engine.workers import bounded
from ..zfs.snapshot import PROP_SUMMARY, PROP_VMSYNCED

log = logging.getLogger(__name__)
PHASES = {"pre": "pre", "post": "post", "pre_snapshot": "pre", "post_snapshot": "post"}


@dataclasses.dataclass(frozen=True)
class HookCall:
    """What a scheduler said when it called the hook."""

    scheduler: str                 # sanoid | zrepl
    phase: str                     # pre | post
    datasets: tuple[str, ...]
    snapnames: tuple[str, ...]
    pre_failed: bool = False       # sanoid: the pre hook failed (post runs anyway if forced)
    dry_run: bool = False          # zrepl: nothing is snapshotted
    timeout_s: float | None = None  # zrepl: how long the hook may take

    def key(self, dataset: str) -> str:
        """What pre records and post must give again: scheduler, dataset, snapshot names."""
        return f"{self.scheduler}:{dataset}@{','.join(sorted(self.snapnames))}"

    def snapshots(self, dataset: str) -> list[str]:
        return [f"{dataset}@{name}" for name in self.snapnames]


def read_call(env: Mapping[str, str], phase: str | None) -> HookCall:
    """The call from the environment (``phase`` from the command line, if given there).

    Raises ``InvalidInput`` naming the variable that is missing or wrong."""
    if "ZREPL_FS" in env or "ZREPL_HOOKTYPE" in env:
        scheduler, stated, targets, names = "zrepl", "ZREPL_HOOKTYPE", "ZREPL_FS", "ZREPL_SNAPNAME"
    elif "SANOID_TARGETS" in env or "SANOID_SCRIPT" in env:
        scheduler, stated, targets, names = "sanoid", "SANOID_SCRIPT", "SANOID_TARGETS", "SANOID_SNAPNAMES"
    else:
        raise InvalidInput.single("environment", "neither sanoid's SANOID_TARGETS nor zrepl's ZREPL_FS is "
                                                 "set: run this as a sanoid or zrepl hook")
    errors: list[FieldError] = []
    env_phase = PHASES.get(env.get(stated, ""))
    if env.get(stated) and env_phase is None:
        errors.append(FieldError(stated, f"unknown hook type {env[stated]!r}"))
    if phase is not None and env_phase is not None and phase != env_phase:
        errors.append(FieldError("phase", f"'{phase}' contradicts {stated}={env[stated]}"))
    final = phase or env_phase
    if final is None:
        errors.append(FieldError("phase", f"give pre or post, or set {stated}"))
    datasets = tuple(d for d in env.get(targets, "").split(",") if d)
    if not datasets:
        errors.append(FieldError(targets, "is empty"))
    errors += [FieldError(targets, f"'{d}' {p}") for d in datasets if (p := dataset_problem(d))]
    # sanoid's post puts "dataset@" before SANOID_SNAPNAME (not before SANOID_SNAPNAMES).
    snapnames = tuple(n.rpartition("@")[2] for n in env.get(names, "").split(",") if n)
    if not snapnames:
        errors.append(FieldError(names, "is empty"))
    errors += [FieldError(names, f"'{n}' {p}") for n in snapnames for d in datasets[:1]
               if (p := snapshot_problem(d, n))]
    timeout = _seconds(env.get("ZREPL_TIMEOUT"), "ZREPL_TIMEOUT", errors)
    if errors:
        raise InvalidInput(errors)
    return HookCall(scheduler=scheduler, phase=final or "", datasets=datasets, snapnames=snapnames,
                    pre_failed=env.get("SANOID_PRE_FAILURE", "0") not in ("", "0"),
                    dry_run=env.get("ZREPL_DRYRUN", "") == "true", timeout_s=timeout)


def _seconds(value: str | None, field: str, errors: list[FieldError]) -> float | None:
    if not value:
        return None
    text = value.strip().removesuffix("s")   # zrepl may print a Go duration such as "30s"
    try:
        seconds = float(text)
    except ValueError:
        errors.append(FieldError(field, f"{value!r} is not a number of seconds"))
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        errors.append(FieldError(field, f"{value!r} must be a positive number of seconds"))
        return None
    return seconds


_DEFAULTS = {k: v["default"] for k, v in
             schemas.load_schema("cli")["properties"]["hooks"]["properties"].items()}


@dataclasses.dataclass(frozen=True)
class HookSettings:
    """The ``[hooks]`` section of the configuration (schemas/cli.json, with its defaults)."""

    strict: bool = _DEFAULTS["strict"]
    recursive: frozenset[str] = frozenset(_DEFAULTS["recursive"])   # snapshotted with -r
    timeout_s: float = float(_DEFAULTS["timeout_seconds"])          # sanoid's script_timeout
    post_wait_s: float = float(_DEFAULTS["post_wait_seconds"])

    @staticmethod
    def from_document(document: Mapping[str, Any]) -> HookSettings:
        """From a validated ``hooks`` section."""
        values = _DEFAULTS | dict(document)
        return HookSettings(strict=bool(values["strict"]), recursive=frozenset(values["recursive"]),
                            timeout_s=float(values["timeout_seconds"]),
                            post_wait_s=float(values["post_wait_seconds"]))


def budget(timeout_s: float, elapsed_s: float) -> float:
    """Seconds this hook may spend on VMware: the scheduler's timeout, less what has
    passed since the process started and a margin to record, print and exit (sanoid 2.1.0
    kills itself, not only the hook, when a pre hook overruns)."""
    return timeout_s - elapsed_s - max(1.0, 0.15 * timeout_s)


def not_coordinated(reason: str) -> dict[str, str]:
    """The properties of a snapshot no VMware coordination could be done for."""
    return {PROP_VMSYNCED: "N", PROP_SUMMARY: f"not coordinated: {reason}"[:1000]}


# --- pre ------------------------------------------------------------------------------------


def pre(coordinator: Coordinator, call: HookCall, settings: HookSettings, dataset: str,
        seconds: float) -> tuple[RunContext, list[str]]:
    """Finish what dead runs left (within a third of ``seconds``), then begin this run
    within the rest, recorded under the call's key; the run then waits ``post_wait_s`` for
    its post hook (after that, the next pre or reconcile finishes it). Also returns the runs
    that reconcile finished (for ``label_finished``)."""
    finished: list[str] = []
    try:
        finished = coordinator.reconcile(sweep=False, deadline_s=max(0.5, seconds / 3))["finished"]
    except TimeoutError:   # another reconcile holds the journal: it finishes what is left
        log.info("pre hook: reconcile is busy elsewhere; not waiting for it")
    context = coordinator.begin(dataset, recursive=dataset in settings.recursive,
                                hook_key=call.key(dataset), deadline_s=max(0.5, seconds * 2 / 3))
    coordinator.journal.detach(context.run_id, coordinator.parts.clock() + settings.post_wait_s)
    return context, finished


# --- post -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Labels:
    """What post puts on which snapshot, and what it found missing."""

    on: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)
    uncovered: list[str] = dataclasses.field(default_factory=list)


def labels_for(call: HookCall, dataset: str, recursive_run: bool, properties: dict[str, str],
               existing: Sequence[str], mapped: Sequence[str]) -> Labels:
    """Which snapshot gets which properties.

    ``existing``: every snapshot name under ``dataset`` (recursively); ``mapped``: the
    datasets with a VMware mapping. A run that planned the children labels each of their
    snapshots with its own properties; one that did not, whose snapshot turns out to be
    recursive over mapped children, labels those children and itself N.
    """
    found = set(existing)
    labels = Labels()
    for name in call.snapnames:
        top = f"{dataset}@{name}"
        if top not in found:
            labels.missing.append(top)
            continue
        children = sorted(s for s in found if s.endswith(f"@{name}") and s.startswith(f"{dataset}/"))
        if recursive_run:
            labels.on |= {s: properties for s in [top, *children]}
            continue
        uncovered = [s for s in children if s.partition("@")[0] in mapped]
        labels.uncovered += uncovered
        if not uncovered:
            labels.on[top] = properties
            continue
        why = (f"snapshotted recursively, but the pre hook planned only {dataset}: list it in "
               "hooks.recursive (sanoid recursive = zfs)")
        summary = f"{properties.get(PROP_SUMMARY, '')} uncoordinated_children={len(uncovered)}"
        labels.on[top] = properties | {PROP_VMSYNCED: "N", PROP_SUMMARY: summary.strip()}
        labels.on |= {s: not_coordinated(why) for s in uncovered}
    return labels


def mapped_datasets(coordinator: Coordinator, dataset: str) -> list[str]:
    return sorted({m.dataset for m in scope_mappings(coordinator.parts.mappings, Scope(dataset, True))})


def post(coordinator: Coordinator, call: HookCall, dataset: str, existing: Sequence[str],
         label: Callable[[str, dict[str, str]], None], seconds: float) -> dict[str, Any]:
    """Label the snapshots of the run pre recorded for exactly this call, then end it, all
    within ``seconds`` (the scheduler's timeout binds post too: sanoid 2.1.0 stops entirely
    when a post hook overruns). The labels come first, from what begin recorded (the undo
    changes nothing a snapshot holds). An end that does not fit is left running and
    finished by reconcile; the result then says ``ending`` is ``left to reconcile``.

    Raises ``LookupError`` when no such run exists (after labelling the snapshots N)."""
    journal = coordinator.journal
    key = call.key(dataset)
    record = journal.run_for_hook(key)
    if record is None:
        reason = "the pre hook failed" if call.pre_failed else f"no pre hook was recorded for {key}"
        labels = labels_for(call, dataset, True, not_coordinated(reason), existing, [])
        _apply(labels, label, [])
        raise LookupError(f"{reason}: {', '.join(labels.on) or 'no snapshot'} labelled vmsynced=N")
    # A child's own snapshot of the same name (sanoid recursive = yes, the child's turn first)
    # belongs to the child's run: never this one's, and never relabelled.
    existing = [s for s in existing
                if s.partition("@")[0] == dataset or _unclaimed(journal, s, record.run_id)]
    known = record.manifest or record.context
    properties = (known or {}).get("properties") or not_coordinated("the pre hook did not finish")
    labels = labels_for(call, dataset, record.recursive, properties, existing,
                        mapped_datasets(coordinator, dataset))
    warnings: list[str] = []
    labelled = _apply(labels, label, warnings)
    for snapshot in labelled:
        try:
            journal.set_snapshot(record.run_id, snapshot)
        except Exception as exc:  # noqa: BLE001 - the label is on the snapshot itself
            warnings.append(f"{snapshot}: not recorded in the journal: {exc}")
    report = _finish(coordinator, record, labels, seconds, warnings)
    report["warnings"] = list(dict.fromkeys([*report.get("warnings", ()), *warnings]))
    report["snapshots"] = sorted(labels.on)
    report["missing_snapshots"] = labels.missing
    report["uncoordinated_children"] = labels.uncovered
    return report


def _unclaimed(journal: Journal, snapshot: str, run_id: str) -> bool:
    other = journal.run_for_snapshot(snapshot)
    return other is None or other.run_id == run_id


def _finish(coordinator: Coordinator, record: RunRecord, labels: Labels, seconds: float,
            warnings: list[str]) -> dict[str, Any]:
    """The run's end, bounded; an ended run (a strict pre refused it) as it was."""
    if record.ended:
        return dict(record.manifest or record.context or {})
    if record.context is None:
        warnings.append("the pre hook did not finish: what it did is undone by reconcile")
        coordinator.journal.detach(record.run_id, coordinator.parts.clock())
        return {"run_id": record.run_id, "dataset": record.dataset, "vmsynced": False, "vms": [],
                "ending": "left to reconcile"}
    # Not waiting for this post any more: if it is killed now, reconcile finishes the run.
    coordinator.journal.detach(record.run_id, coordinator.parts.clock())
    primary = next(iter(labels.on), None)
    problems = ({"recursion": f"{len(labels.uncovered)} child snapshot(s) not prepared"}
                if labels.uncovered else {})
    try:
        return bounded(lambda: coordinator.end(record.run_id, primary, problems=problems), seconds)
    except TimeoutError:
        warnings.append(f"the end did not fit the hook's {seconds:.0f} s: reconcile finishes it")
        return RunContext.from_dict(record.context).to_dict() | {"ending": "left to reconcile"}


def label_finished(coordinator: Coordinator, finished: Sequence[str],
                   existing: Callable[[str], list[str]],
                   label: Callable[[str, dict[str, str]], None]) -> list[str]:
    """The snapshots of hook runs reconcile finished (their post never came: the scheduler
    killed a hook): labelled from what the run recorded, N if its pre never finished."""
    done = []
    for run_id in finished:
        record = coordinator.journal.run(run_id)
        if record is None or not record.hook_key:
            continue
        scheduler, _, rest = record.hook_key.partition(":")
        dataset, _, names = rest.rpartition("@")
        call = HookCall(scheduler, "post", (dataset,), tuple(names.split(",")))
        known = record.context
        properties = (known or {}).get("properties") or not_coordinated(
            "the scheduler stopped the pre hook before it finished")
        present = existing(dataset)
        mine = [s for s in call.snapshots(dataset)
                if s in present and _unclaimed(coordinator.journal, s, run_id)]
        for snapshot in _apply(Labels(on=dict.fromkeys(mine, properties)), label, []):
            coordinator.journal.set_snapshot(run_id, snapshot)
            done.append(snapshot)
    return done


def _apply(labels: Labels, label: Callable[[str, dict[str, str]], None], warnings: list[str]) -> list[str]:
    done = []
    for snapshot, properties in labels.on.items():
        try:
            label(snapshot, properties)
            done.append(snapshot)
        except Exception as exc:  # noqa: BLE001 - one label lost is said, never a lost undo
            warnings.append(f"the snapshot {snapshot} could not be labelled: {exc}")
    return done
