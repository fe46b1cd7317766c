"""The engine as the middlewared services drive it, through a plain ``call`` callable.

One ``Runtime`` lives in the ``vmware_coord`` service. It reads the mappings, endpoint
settings, policies and engine settings from middlewared on every run (they may change at
any time) and builds a coordinator from them; the hook path's ``begin`` and ``end`` arrive
as separate calls, so the sessions ``begin`` opened wait for ``end`` in the runtime's
``SessionPool``. It turns reports into alerts.

The journal lives on the system dataset (``systemdataset.config()['path']``), which
survives reboots and, on HA systems, fails over with the pool. Snapshots are found and
labelled through the ``zfs`` command (``snapshots.py`` says why); manual runs create them
through ``pool.snapshot.create``, which every release has. TrueNAS's own VMs are libvirt
guests of every run when its libvirtd runs (``guests.py``): placed by their disks, frozen
by their agents, and held back from the stock pause while a run holds them.
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
from ..engine.ports import Connector
from ..engine.sessions import Connectors, SessionPool
from ..engine.settings import Settings, parse_settings
from ..libvirt.settings import LibvirtSettings
from ..store.policy_repo import with_draft
from ..vsphere import privileges
from ..vsphere.session import open_session
from ..zfs.shell import LocalShell, Shell
from . import alerts, facts, guests, snapshots
from .policy_store import DatastorePolicyRepository
from .trust import FirstUseConnector

log = logging.getLogger(__name__)

Call = Callable[..., Any]
ENDPOINT_TABLE = "vmware_coord.endpoint"
STATE_TABLE = "vmware_coord.state"
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


def classic_alerts(call: Call) -> Callable[[alerts.AlertOp], None]:
    """25.10's and 26.0's ``alert.oneshot_create(name, args)`` (the service passes 27's way)."""
    return lambda op: call(f"alert.oneshot_{op.action}", op.klass, op.args)


class Runtime:
    def __init__(self, call: Call, send_alert: Callable[[alerts.AlertOp], None] | None = None,
                 shell: Shell | None = None, local_guests: bool = True) -> None:
        """``local_guests``: whether TrueNAS's own VMs may be coordinated (not when the stock
        pause could not be told to leave them alone)."""
        self._call = call
        self._local_guests = local_guests
        self._send_alert = send_alert or classic_alerts(call)
        self.shell = shell or LocalShell()
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
        """Whether the admin allows VMware traffic. When that cannot be read, no: stock stops
        there too, and an admin's block must never be guessed away."""
        try:
            return bool(self._call("network.general.can_perform_activity", ACTIVITY))
        except Exception:  # noqa: BLE001 - unknown: VMware is left alone, the snapshot goes ahead
            log.error("whether VMware network activity is allowed could not be read; VMware is not "
                      "contacted", exc_info=True)
            return False

    def coordinator(self, *, hook: bool = False,
                    progress: Callable[[str, Any], None] | None = None) -> tuple[Coordinator, facts.Topology]:
        """A coordinator with what middlewared says now (the hook path: a shorter begin)."""
        topo, settings = self.topology(), self.settings()
        engine = settings.engine
        if hook:
            begin = min(engine.begin_deadline_s, HOOK_BEGIN_DEADLINE_S)
            engine = dataclasses.replace(engine, begin_deadline_s=begin,
                                         vm_deadline_s=min(engine.vm_deadline_s, begin))
        connector: Connector = self.vsphere_connector(topo)
        local = self.local()
        if local is not None:
            from ..libvirt.hypervisor import LibvirtConnector
            connector = Connectors(connector, LibvirtConnector([local]))
        coordinator = Coordinator(
            connector=connector, journal=self.journal(),
            mappings=list(topo.mappings), storage=lambda: facts.storage_facts(self._call),
            policies=[p for p in DatastorePolicyRepository(self._call).list() if p.enabled],
            default_ladder=settings.default_ladder, config=engine, progress=progress,
            sessions=self._sessions, libvirt_default_ladder=settings.libvirt_default_ladder,
            local_endpoints=[local.id] if local is not None else [])
        return coordinator, topo

    def vsphere_connector(self, topo: facts.Topology) -> FirstUseConnector:
        """The mapped vCenters and ESXi hosts, each verified (or pinned on first use)."""
        return FirstUseConnector(topo.endpoints, topo.password_for, self.first_use(topo), topo.hosts,
                                 pin=self.pin, notify=self._send_alert_safely)

    def local(self) -> LibvirtSettings | None:
        """TrueNAS's libvirt, when its guests are coordinated here."""
        return guests.local_settings() if self._local_guests else None

    def _journal_unlocked(self) -> Journal:
        if self._journal is None:
            base = self._call("systemdataset.config").get("path") or "/var/db/system"
            self._journal = Journal(Path(base) / JOURNAL)
        return self._journal

    # --- trust on first use ---------------------------------------------------------------

    def state(self, key: str) -> dict[str, Any] | None:
        rows = self._call("datastore.query", STATE_TABLE, [["key", "=", key]])
        return rows[0]["value"] if rows else None

    def record_trust_baseline(self) -> None:
        """At the first setup: the hosts mapped before this plugin (trusted on first use)."""
        if self.state("trust_baseline") is None:
            hosts = sorted({r["hostname"].lower() for r in self._call("vmware.query")})
            self._call("datastore.insert", STATE_TABLE, {"key": "trust_baseline", "value": {"hosts": hosts}})

    def first_use(self, topo: facts.Topology) -> set[str]:
        """Endpoints of baseline hosts that say nothing yet about how to trust them (their
        settings, if any, set only a port or timeouts)."""
        baseline = set((self.state("trust_baseline") or {}).get("hosts", ()))
        trusted = {r["hostname"].lower() for r in self._call("datastore.query", ENDPOINT_TABLE)
                   if any((r["document"].get("tls") or {}).get(k)
                          for k in ("sha256_fingerprint", "ca_certificate", "skip_verification"))}
        return {e for e, host in topo.hosts.items() if host.lower() in baseline - trusted}

    def pin(self, hostname: str, fingerprint: str) -> int:
        """Pin ``fingerprint`` for ``hostname`` (its endpoint row created or updated)."""
        rows = [r for r in self._call("datastore.query", ENDPOINT_TABLE)
                if r["hostname"].lower() == hostname.lower()]
        if not rows:
            row = {"hostname": hostname, "document": {"tls": {"sha256_fingerprint": fingerprint}}}
            return self._call("datastore.insert", ENDPOINT_TABLE, row)
        document = dict(rows[0]["document"])
        tls = {k: v for k, v in (document.get("tls") or {}).items()
               if k not in ("skip_verification", "ca_certificate")}   # a pin replaces them
        document["tls"] = tls | {"sha256_fingerprint": fingerprint}
        self._call("datastore.update", ENDPOINT_TABLE, rows[0]["id"], {"document": document})
        return rows[0]["id"]

    # --- stock's freenas:vmsynced on datasets ----------------------------------------------

    def dataset_flags(self) -> list[str]:
        return snapshots.dataset_flags(self.shell, [m.dataset for m in self.topology().mappings])

    def flag_alerts(self) -> None:
        flagged = self.dataset_flags()
        if not flagged:
            self.apply([alerts.AlertOp("delete", alerts.DATASET_FLAGS, "datasets")])
            return
        self.apply([alerts.AlertOp("create", alerts.DATASET_FLAGS, {
            "key": "datasets", "count": len(flagged), "datasets": ", ".join(flagged)[:900],
            "fix": "Clear them with midclt call vmware_coord.clear_dataset_flags (each snapshot then "
                   "shows only the flag it was labelled with itself)."})])

    def clear_dataset_flags(self) -> list[str]:
        flagged = self.dataset_flags()
        for dataset in flagged:
            snapshots.clear_dataset_flag(self.shell, dataset)
        self.flag_alerts()
        return flagged

    # --- the hook path (zettarepl's observer, zfs.snapshot.create with vmware_sync) ---------

    def has_mappings(self, dataset: str, recursive: bool, exclude: list[str]) -> bool:
        """Whether a snapshot of ``dataset`` has anything to coordinate: a VMware mapping in
        scope, or a local guest with a disk there (a plan of the local guests only)."""
        scope = Scope(dataset, recursive, tuple(sorted(set(exclude))))
        if scope_mappings(self.topology().mappings, scope):
            return True
        if self.local() is None:
            return False
        plan, _errors = self.coordinator()[0].plan(dataset, recursive, exclude)
        return bool(plan.vms)

    def left_to_stock(self, vm_ids: list[int | str]) -> list[int | str]:
        """The VMs the stock pause (``vm.suspend_vms``, ``vm.resume_suspended_vms``) may touch:
        all but those a live run holds. Unknown, all: the stock behaviour is never lost."""
        local = self.local()
        if local is None:
            return list(vm_ids)
        try:
            held = guests.held_vm_ids(self.journal(), local.id)
        except Exception:  # noqa: BLE001 - the journal unreadable: stock pauses as before
            log.warning("which VMs the plugin holds could not be read; the stock pause goes on",
                        exc_info=True)
            return list(vm_ids)
        return guests.left_to_stock(vm_ids, held)

    def begin(self, dataset: str, recursive: bool, exclude: list[str],
              hook: dict[str, Any]) -> dict[str, Any] | None:
        """VMware snapshots before the ZFS snapshot; None when VMware activity is blocked.

        ``hook`` says how to find the snapshot afterwards (the task's naming schema; its
        ``allow_empty``) and travels in the context, which the caller hands back to end."""
        if not self.activity_allowed():
            log.warning("VMware network activity is disabled: %s is snapshotted without VMware", dataset)
            return None
        coordinator, _topo = self.coordinator(hook=True)
        return coordinator.begin(dataset, recursive, exclude).to_dict() | {"hook": hook}

    def end(self, context: dict[str, Any]) -> dict[str, Any]:
        """Undo this run's VMware work, label exactly the snapshots it covered, raise/clear alerts."""
        record = self.journal().run(context["run_id"])
        if record is not None and record.ended:
            return record.manifest or {}   # reconcile finished it already (e.g. after a restart)
        coordinator, topo = self.coordinator(hook=True)
        hook = context.get("hook") or {}
        made = self.snapshots_made(context, hook)
        notes = []
        if made and hook.get("allow_empty") is False and all(snapshots.empty(self.shell, s) for s in made):
            notes.append(f"{made[0]} is empty: zettarepl destroys it after this hook (the task's "
                         "allow_empty is off), so no snapshot of this run remains")
        report = end_and_label(coordinator, context["run_id"], made, self.label, notes)
        self.after_run(report, topo)
        return report

    def snapshots_made(self, context: dict[str, Any], hook: dict[str, Any]) -> list[str]:
        """What the run's snapshot is: a periodic task's by its naming schema, created since
        begin (a manual snapshot meanwhile is not it); with its children when recursive."""
        try:
            top = snapshots.task_snapshot(self.shell, context["dataset"], hook.get("naming_schema"),
                                          context["started_at"])
            if top is None:
                return []
            if not context["recursive"]:
                return [top]
            return snapshots.family(self.shell, top, context.get("exclude") or ())
        except Exception:  # noqa: BLE001 - unknown: the run still ends, unlabelled
            log.warning("snapshots of %s could not be listed", context["dataset"], exc_info=True)
            return []

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

    def label(self, snapshot: str, properties: dict[str, str]) -> None:
        snapshots.label(self.shell, snapshot, properties)

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
            self._send_alert_safely(op)

    def _send_alert_safely(self, op: alerts.AlertOp) -> None:
        try:
            self._send_alert(op)
        except Exception:  # noqa: BLE001 - an alert that cannot be raised is logged
            log.warning("alert %s %s failed", op.action, op.klass, exc_info=True)

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
        """A manual coordinated snapshot through pool.snapshot.create, properties at creation."""
        coordinator, topo = self.coordinator(progress=progress)
        snapname = name or default_name()

        def take(properties: dict[str, str]) -> str:
            created = self._call("pool.snapshot.create", {"dataset": dataset, "name": snapname,
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
        record = history.find_run(self.journal(), key, lambda snap: snapshots.run_of(self.shell, snap))
        return None if record is None else record.document

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
