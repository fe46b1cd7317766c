"""The engine as the middlewared services drive it, through a plain ``call`` callable.

One ``Runtime`` lives in the ``vmware_coord`` service. It reads the mappings, endpoint
settings, policies and engine settings from middlewared on every run (they may change at
any time) and builds a coordinator from them; the hook path's ``begin`` and ``end`` arrive
as separate calls, so the sessions ``begin`` opened wait for ``end`` in the runtime's
``SessionPool``. It turns reports into alerts.

The journal lives on the system dataset (``systemdataset.config()['path']``), which
survives reboots and, on HA systems, fails over with the pool.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import schemas
from ..app import history
from ..app.ending import end_and_label
from ..app.settling import settle
from ..app.snapshot import coordinated_snapshot, default_name
from ..domain.selection import Scope, scope_mappings
from ..engine.coordinator import Coordinator
from ..engine.journal import Journal
from ..engine.sessions import SessionPool
from ..engine.settings import Settings, parse_settings
from ..store.policy_repo import with_draft
from ..vsphere import privileges
from ..vsphere.hypervisor import VsphereConnector
from ..vsphere.session import open_session
from ..zfs.snapshot import PROP_RUN
from . import alerts, facts
from .policy_store import DatastorePolicyRepository

log = logging.getLogger(__name__)

Call = Callable[..., Any]
ENDPOINT_TABLE = "vmware_coord.endpoint"
JOURNAL = Path("vmware_coord") / "journal.sqlite"
# zettarepl's observer is serial and schedules by the minute: a begin phase that stays under
# this never pushes the next minute's snapshot tasks back, whatever the configured deadline.
HOOK_BEGIN_DEADLINE_S = 45.0
HOST_MANAGED = frozenset({"journal_path"})
ACTIVITY = "vmware"   # the stock activity: blocking "VMware Snapshots" blocks this plugin too


def config_document(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The full vmware_coord.config document: schema defaults under what is stored.

    ``journal_path`` is not a setting here: on TrueNAS the journal is on the system dataset.
    """
    defaults = {k: v for k, v in schemas.defaults("config").items() if k not in HOST_MANAGED}
    return defaults | {k: v for k, v in (stored or {}).items() if k not in HOST_MANAGED}


def stored_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "id"}


class Runtime:
    def __init__(self, call: Call) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._journal: Journal | None = None
        self._sessions = SessionPool()

    # --- inputs -----------------------------------------------------------------------------

    def journal(self) -> Journal:
        with self._lock:
            return self._journal_unlocked()

    def settings(self) -> Settings:
        stored = stored_settings(self._call("vmware_coord.config.config"))
        return parse_settings(stored, field="vmware_coord_config")

    def topology(self) -> facts.Topology:
        return facts.topology(self._call("vmware.query"), self._call("datastore.query", ENDPOINT_TABLE))

    def activity_allowed(self) -> bool:
        try:
            return bool(self._call("network.general.can_perform_activity", ACTIVITY))
        except Exception:  # noqa: BLE001 - unknown activity (stock setup not run yet): not blocked
            log.warning("network activity %r is not registered; proceeding", ACTIVITY, exc_info=True)
            return True

    def coordinator(self, *, hook: bool = False,
                    progress: Callable[[str, Any], None] | None = None) -> tuple[Coordinator, facts.Topology]:
        """A coordinator with what middlewared says now (the hook path: a shorter begin)."""
        topo, settings = self.topology(), self.settings()
        engine = settings.engine
        if hook:
            begin = min(engine.begin_deadline_s, HOOK_BEGIN_DEADLINE_S)
            engine = dataclasses.replace(engine, begin_deadline_s=begin,
                                         vm_deadline_s=min(engine.vm_deadline_s, begin))
        coordinator = Coordinator(
            connector=VsphereConnector(topo.endpoints, topo.password_for), journal=self.journal(),
            mappings=list(topo.mappings), storage=lambda: facts.storage_facts(self._call),
            policies=[p for p in DatastorePolicyRepository(self._call).list() if p.enabled],
            default_ladder=settings.default_ladder, config=engine, progress=progress,
            sessions=self._sessions)
        return coordinator, topo

    def _journal_unlocked(self) -> Journal:
        if self._journal is None:
            base = self._call("systemdataset.config").get("path") or "/var/db/system"
            self._journal = Journal(Path(base) / JOURNAL)
        return self._journal

    # --- the hook path (zettarepl's observer, zfs.snapshot.create with vmware_sync) ---------

    def has_mappings(self, dataset: str, recursive: bool, exclude: list[str]) -> bool:
        scope = Scope(dataset, recursive, tuple(sorted(set(exclude))))
        return bool(scope_mappings(self.topology().mappings, scope))

    def begin(self, dataset: str, recursive: bool, exclude: list[str]) -> dict[str, Any] | None:
        """VMware snapshots before the ZFS snapshot; None when VMware activity is blocked."""
        if not self.activity_allowed():
            log.warning("VMware network activity is disabled: %s is snapshotted without VMware", dataset)
            return None
        coordinator, _topo = self.coordinator(hook=True)
        return coordinator.begin(dataset, recursive, exclude).to_dict()

    def end(self, context: dict[str, Any]) -> dict[str, Any]:
        """Undo this run's VMware work, label the ZFS snapshot it made, raise/clear alerts."""
        record = self.journal().run(context["run_id"])
        if record is not None and record.ended:
            return record.manifest or {}   # reconcile finished it already (e.g. after a restart)
        coordinator, topo = self.coordinator(hook=True)
        snapshot = self.snapshot_since(context["dataset"], context["started_at"])
        report = end_and_label(coordinator, context["run_id"], snapshot, self.label)
        self.after_run(report, topo)
        return report

    def settle_later(self, report: dict[str, Any]) -> None:
        """Creates that may still land are watched in the background: a hook job must not
        wait for them (zettarepl's observer waits for it)."""
        if report.get("in_doubt"):
            threading.Thread(target=self._settle, name="vmware-coord-settle", daemon=True).start()

    def _settle(self) -> None:
        try:
            settle(self.coordinator()[0])
        except Exception:  # noqa: BLE001 - the periodic reconcile retries
            log.warning("watching for late VMware snapshots failed", exc_info=True)

    def snapshot_since(self, dataset: str, started_at: float) -> str | None:
        """The snapshot of ``dataset`` taken since the run began (the newest such).

        zettarepl only passes ``freenas:vmsynced=Y`` at creation and ``zfs.snapshot.create``
        writes it on the dataset; the run id and summary can only be added afterwards.
        """
        try:
            snaps = self._call("zfs.snapshot.query", [["dataset", "=", dataset]])
        except Exception:  # noqa: BLE001 - unknown: the run still ends, unlabelled
            log.warning("snapshots of %s could not be listed", dataset, exc_info=True)
            return None
        fresh = [s for s in snaps if float(s["properties"]["creation"]["rawvalue"]) >= int(started_at)]
        return max(fresh, key=lambda s: int(s["createtxg"]))["id"] if fresh else None

    def label(self, snapshot: str, properties: dict[str, str]) -> None:
        updates = [{"key": k, "value": v} for k, v in sorted(properties.items())]
        self._call("zfs.snapshot.update", snapshot, {"user_properties_update": updates})

    def after_run(self, report: dict[str, Any], topo: facts.Topology) -> None:
        self.settle_later(report)
        scope = Scope(report["dataset"], report["recursive"], tuple(report.get("exclude", ())))
        ops = alerts.run_alerts(report, scope_mappings(topo.mappings, scope), topo.hosts)
        leftovers = report.get("leftovers") or []
        if leftovers:
            ops += alerts.leftover_alerts(len(leftovers), {}, leftovers)
        self.apply(ops)

    def apply(self, ops: list[alerts.AlertOp]) -> None:
        for op in ops:
            method = "alert.oneshot_create" if op.action == "create" else "alert.oneshot_delete"
            try:
                self._call(method, op.klass, op.args)
            except Exception:  # noqa: BLE001 - an alert that cannot be raised is logged
                log.warning("%s %s failed", method, op.klass, exc_info=True)

    # --- the API ----------------------------------------------------------------------------

    def plan(self, dataset: str, recursive: bool, exclude: list[str],
             draft: dict[str, Any] | None = None) -> dict[str, Any]:
        """The dry run; with ``draft`` ({"policy": document, "id": id or None}) as if that
        policy were saved (validated like a save; nothing is written)."""
        policies = None
        if draft is not None:
            policies = with_draft(DatastorePolicyRepository(self._call), draft.get("policy") or {},
                                  draft.get("id"))
        coordinator, _ = self.coordinator()
        plan, errors = coordinator.plan(dataset, recursive, exclude, policies)
        return plan.to_dict() | {"endpoint_errors": errors}

    def run(self, dataset: str, recursive: bool, name: str | None,
            progress: Callable[[str, Any], None]) -> dict[str, Any]:
        """A manual coordinated snapshot through zfs.snapshot.create, properties at creation."""
        coordinator, topo = self.coordinator(progress=progress)
        snapname = name or default_name()

        def take(properties: dict[str, str]) -> str:
            created = self._call("zfs.snapshot.create", {"dataset": dataset, "name": snapname,
                                                         "recursive": recursive, "properties": properties})
            return created["name"]

        report = coordinated_snapshot(coordinator, dataset, take, recursive)
        self.after_run(report, topo)
        return report

    def reconcile(self) -> dict[str, Any]:
        if not self.activity_allowed():
            return {"skipped": "VMware network activity is disabled"}
        coordinator, _ = self.coordinator()
        result = coordinator.reconcile(sweep=True)
        self.apply(alerts.leftover_alerts(result["still_open"], result["endpoint_errors"]))
        return result

    def runs(self, limit: int) -> list[dict[str, Any]]:
        return history.runs(self.journal(), limit)

    def manifest(self, key: str) -> dict[str, Any] | None:
        record = history.find_run(self.journal(), key, self._run_property)
        return None if record is None else record.document

    def _run_property(self, snapshot: str) -> str | None:
        """The run id a snapshot carries (replicated or labelled elsewhere)."""
        try:
            props = self._call("zfs.snapshot.query", [["id", "=", snapshot]], {"get": True})
        except Exception:  # noqa: BLE001 - no such snapshot
            return None
        return props.get("properties", {}).get(PROP_RUN, {}).get("value")

    def check_privileges(self, mapping_id: str) -> dict[str, Any]:
        topo = self.topology()
        mapping = topo.mapping(str(mapping_id))
        if mapping is None:
            raise LookupError(f"no VMware mapping with id {mapping_id}")
        session = open_session(topo.endpoints[mapping.endpoint_id], topo.password_for(mapping.endpoint_id))
        try:
            return privileges.check(session, mapping.datastore) | {"mapping_id": mapping.id,
                                                                   "endpoint_id": mapping.endpoint_id}
        finally:
            session.logout()

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
