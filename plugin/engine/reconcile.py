"""Reconcile: finish what dead runs left, then remove marked snapshots no live run owns.

Run at startup, before each run and periodically. A run is alive while its owner may
still end it: its process lives (and it is younger than ``active_run_max_age_s``), or, for
a detached hook run, while it is younger than ``detached_run_max_age_s``. Everything else
open in the journal is undone exactly as end would have; afterwards every VMware snapshot
carrying this product's marker that no journal row accounts for is removed, once it is
older than ``marker_max_age_s`` if its run is unknown here (maybe another NAS's). The VM
of a restore that is not cleaned up keeps the marked snapshot it was reverted to.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .calls import call_and_wait
from .context import RunContext, run_id_of
from .end import prune, undo
from .journal import RunRecord
from .parts import Parts
from .ports import describe
from .sessions import close_within, open_within
from .workers import bounded


def reconcile(parts: Parts, sweep: bool = True, deadline_s: float | None = None) -> dict[str, Any]:
    """``deadline_s``: give up undoing after this long (a hook with a short timeout); what is
    not done stays open for the next reconcile; it also bounds the wait for another
    reconcile's lock (``TimeoutError``). Raises ``JournalError`` when the journal cannot be
    read: nothing is then touched. The result's ``finished`` lists the runs it ended."""
    with parts.journal.exclusive(timeout=600 if deadline_s is None else deadline_s):
        now = parts.clock()
        live_runs = {r.run_id for r in parts.journal.begun_runs() if is_live(parts, r, now)}
        open_actions = [a for a in parts.journal.actions(open_only=True) if a.run_id not in live_runs]
        budget = min(parts.config.end_deadline_s, parts.config.end_deadline_s if deadline_s is None
                     else deadline_s)
        undone, _, unreachable = undo(parts, open_actions, {}, time.monotonic() + budget)
        swept: list[str] = []
        errors: dict[str, str] = {}
        if sweep:
            swept, errors = _sweep(parts, live_runs, time.monotonic() + budget)
        finished = []
        for record in parts.journal.begun_runs():
            if record.run_id in live_runs:
                continue
            if not parts.journal.actions(record.run_id, open_only=True):
                parts.journal.end_run(record.run_id, _manifest_of(record), parts.clock())
                finished.append(record.run_id)
        prune(parts)
        return {"undone": [{"run_id": a.run_id, "vm": a.vm_name, "kind": a.kind.value, "result": r}
                           for a, r in undone],
                "swept": swept, "endpoint_errors": errors, "finished": finished,
                "unreachable": sorted(unreachable),
                "still_open": len(parts.journal.actions(open_only=True))}


def _manifest_of(record: RunRecord) -> dict[str, Any]:
    """A dead run's manifest: what its begin recorded, or, when its process died before
    begin finished, an honest empty one (nothing can be claimed about its VMs)."""
    context = record.context or RunContext(
        record.run_id, record.dataset, record.recursive, [], record.started_at, [],
        {"engine": "the run's process stopped before its begin finished"}, []).to_dict()
    return context | {"finished_by": "reconcile"}


def is_live(parts: Parts, record: RunRecord, now: float) -> bool:
    """Whether a run may still be ended by its owner, so reconcile must leave it alone."""
    if record.ended:
        return False
    age = now - record.started_at
    if record.owner_pid is None:
        if record.live_until is not None:
            return now < record.live_until
        return age < parts.config.detached_run_max_age_s
    return age < parts.config.active_run_max_age_s and process_alive(record.owner_pid)


def _sweep(parts: Parts, live_runs: set[str], deadline: float) -> tuple[list[str], dict[str, str]]:
    """Marked snapshots that no live run owns and the journal no longer accounts for, removed
    within the deadline (what is left is swept next time)."""
    swept: list[str] = []
    errors: dict[str, str] = {}
    now = parts.clock()
    # A restored copy keeps the run's snapshot it was reverted to, until its cleanup.
    copies = {(r.plan.get("endpoint_id"), r.new_name)
              for r in parts.journal.restores(10**6, present_only=True)}
    for endpoint_id in parts.connector.endpoint_ids():
        try:
            hv = open_within(parts.connector, endpoint_id, deadline - time.monotonic())
        except Exception as exc:  # noqa: BLE001 - try again next interval
            errors[endpoint_id] = describe(exc)
            continue
        try:
            found = bounded(hv.all_snapshots, deadline - time.monotonic())
            for moref, (name, snapshots) in found.items():
                if (endpoint_id, name) in copies:
                    continue
                for snap in snapshots:
                    run_id = run_id_of(snap.name)
                    if run_id is None or run_id in live_runs:
                        continue
                    known = parts.journal.run(run_id) is not None
                    if not known and now - snap.create_time < parts.config.marker_max_age_s:
                        continue  # maybe another NAS's run with its own journal
                    if time.monotonic() >= deadline:
                        errors[endpoint_id] = "the clean-up deadline passed: the rest is swept next time"
                        break
                    step = call_and_wait(hv, lambda s=snap, hv=hv: hv.start_remove(s.moref), deadline)
                    if step.ok or step.gone:
                        swept.append(f"{name}: {snap.name}")
                    else:
                        errors[f"{endpoint_id}/{moref}"] = step.message or "removal failed"
        except Exception as exc:  # noqa: BLE001 - try again next interval
            errors[endpoint_id] = describe(exc)
        finally:
            close_within(hv)
    return swept, errors


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
