"""The honest vmsynced rule and the journal's durability settings."""

from __future__ import annotations

import sqlite3

import pytest
from truenas_vmware_coord.domain.manifest import Attempt, VmOutcome, summary, vmsynced
from truenas_vmware_coord.domain.model import Consistency, Strategy
from truenas_vmware_coord.domain.strategies.base import ActionKind
from truenas_vmware_coord.engine.context import RunContext
from truenas_vmware_coord.engine.journal import ActionState, Journal


def outcome(name: str, got: Consistency, required: Consistency) -> VmOutcome:
    return VmOutcome(endpoint_id="e", moref=name, name=name, instance_uuid=None, policy="default policy",
                     ladder=[Strategy.QUIESCE, Strategy.CRASH], required=required, consistency=got)


@pytest.mark.parametrize(("outcomes", "errors", "synced"), [
    ([], {}, True),                                                    # no VMs: vacuously synced
    ([], {"vc": "unreachable"}, False),                                # VMs unknown: not synced
    ([outcome("a", Consistency.QUIESCED, Consistency.QUIESCED)], {}, True),
    ([outcome("a", Consistency.CRASH, Consistency.CRASH)], {}, True),  # crash by policy
    ([outcome("a", Consistency.CRASH, Consistency.QUIESCED)], {}, False),  # a failed quiesce
    ([outcome("a", Consistency.POWERED_OFF, Consistency.QUIESCED)], {}, True),
    ([outcome("a", Consistency.EXCLUDED, Consistency.EXCLUDED),
      outcome("b", Consistency.MEMORY, Consistency.QUIESCED)], {}, False),
])
def test_vmsynced_only_when_every_vm_meets_its_requirement(outcomes, errors, synced):
    assert vmsynced(outcomes, errors) is synced


def test_summary_counts_outcomes_and_noncompliance():
    items = [outcome("a", Consistency.QUIESCED, Consistency.QUIESCED),
             outcome("b", Consistency.CRASH, Consistency.QUIESCED)]
    assert summary(items, {"vc": "x"}) == "vms=2 crash=1 quiesced=1 noncompliant=1 endpoint_errors=1"


def test_context_round_trips_through_json_and_keeps_properties():
    entry = outcome("a", Consistency.CRASH, Consistency.QUIESCED)
    entry.attempts.append(Attempt(Strategy.QUIESCE, "failed", "InvalidState", "InvalidState", 0.25))
    context = RunContext("r1", "tank/vm", False, [], 1.0, [entry], {}, ["w"])
    again = RunContext.from_dict(context.to_dict())
    assert again.to_dict() == context.to_dict()
    assert again.properties()["freenas:vmsynced"] == "N"


def test_journal_is_durable_and_survives_reopening(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.start_run("r1", "tank/vm", False, 1.0, owner_pid=None)
    action = journal.intent("r1", "e", "vm-1", "vm one", ActionKind.SNAPSHOT, Strategy.QUIESCE, 2.0,
                            snapshot_name="s")
    journal.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = Journal(path)
    assert reopened._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    [row] = reopened.actions(open_only=True)
    assert (row.id, row.state, row.snapshot_name) == (action, ActionState.INTENT, "s")
    reopened.update(action, ActionState.DONE, 3.0, snapshot_moref="snapshot-9")
    reopened.update(action, ActionState.CLOSED, 4.0)
    [row] = reopened.actions()
    assert (row.state, row.snapshot_moref, row.done_at, row.closed_at) == (ActionState.CLOSED,
                                                                           "snapshot-9", 3.0, 4.0)
    assert reopened.actions(open_only=True) == []
