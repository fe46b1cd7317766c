"""The ``vmware_coord`` services: policies, settings, endpoints, and the coordination itself
(plan, run, reconcile, history, privileges, restores (``restore_methods.py``), and the
bodies of the stock hooks)."""

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from middlewared.api import api_method
from middlewared.service import (
    CallError,
    ConfigService,
    CRUDService,
    InstanceNotFound,
    Service,
    ValidationErrors,
    job,
    periodic,
    private,
)

from ... import schemas
from ...domain.errors import InvalidInput, NotFound
from ...domain.policy import policy_to_dict
from ...engine.settings import parse_settings
from ...vsphere.errors import VsphereError
from ...vsphere.tls import normalize_fingerprint, server_fingerprint
from ..alerts import TAKEOVER, AlertOp
from ..facts import endpoint_document
from ..policy_store import DatastorePolicyRepository, row_to_policy
from ..restores import Restores
from ..runtime import ENDPOINT_TABLE, Runtime, config_document
from . import page
from .alert_classes import sender
from .models import (
    ROLE_READ,
    ROLE_WRITE,
    VMwareCoordCheckPrivilegesArgs,
    VMwareCoordCheckPrivilegesResult,
    VMwareCoordClearDatasetFlagsArgs,
    VMwareCoordClearDatasetFlagsResult,
    VMwareCoordConfigEntry,
    VMwareCoordConfigUpdateArgs,
    VMwareCoordConfigUpdateResult,
    VMwareCoordDatasetFlagsArgs,
    VMwareCoordDatasetFlagsResult,
    VMwareCoordEndpointCreateArgs,
    VMwareCoordEndpointCreateResult,
    VMwareCoordEndpointDeleteArgs,
    VMwareCoordEndpointDeleteResult,
    VMwareCoordEndpointEntry,
    VMwareCoordEndpointFingerprintArgs,
    VMwareCoordEndpointFingerprintResult,
    VMwareCoordEndpointPinArgs,
    VMwareCoordEndpointPinResult,
    VMwareCoordEndpointUpdateArgs,
    VMwareCoordEndpointUpdateResult,
    VMwareCoordManifestArgs,
    VMwareCoordManifestResult,
    VMwareCoordPlanArgs,
    VMwareCoordPlanResult,
    VMwareCoordPolicyCreateArgs,
    VMwareCoordPolicyCreateResult,
    VMwareCoordPolicyDeleteArgs,
    VMwareCoordPolicyDeleteResult,
    VMwareCoordPolicyEntry,
    VMwareCoordPolicyUpdateArgs,
    VMwareCoordPolicyUpdateResult,
    VMwareCoordReconcileArgs,
    VMwareCoordReconcileResult,
    VMwareCoordRunArgs,
    VMwareCoordRunResult,
    VMwareCoordRunsArgs,
    VMwareCoordRunsResult,
)
from .restore_methods import RestoreMethods
from .tables import table_ddl
from .takeover import TAKEOVER_PROBLEMS, VM_TAKEOVER_PROBLEMS

log = logging.getLogger(__name__)
ENDPOINT_SETTINGS = ("port", "tls", "connect_timeout_seconds", "read_timeout_seconds", "limits")


@contextlib.contextmanager
def field_errors(schema_name: str, document_field: str = "policy") -> Iterator[None]:
    """The engine's InvalidInput as middlewared ValidationErrors, fields under ``schema_name``."""
    try:
        yield
    except InvalidInput as exc:
        verrors = ValidationErrors()
        for field, message in exc.errors:
            head, _, rest = field.partition(".")
            verrors.add(f"{schema_name}.{rest}" if head == document_field and rest else
                        schema_name if head == document_field else f"{schema_name}.{field}", message)
        raise verrors from None
    except NotFound as exc:
        raise InstanceNotFound(str(exc)) from None


class VMwareCoordPolicyService(CRUDService):
    """Per-VM exception policies (which VMs are quiesced, powered off, left crash-consistent...)."""

    class Config:
        namespace = "vmware_coord.policy"
        datastore = "vmware_coord.policy"
        datastore_extend = "vmware_coord.policy.extend"
        cli_namespace = "storage.vmware_coord.policy"
        entry = VMwareCoordPolicyEntry
        role_prefix = "SNAPSHOT_TASK"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repo = DatastorePolicyRepository(self.middleware.call_sync)

    @private
    def extend(self, row: dict[str, Any]) -> dict[str, Any]:
        return policy_to_dict(row_to_policy(row))

    @api_method(VMwareCoordPolicyCreateArgs, VMwareCoordPolicyCreateResult,
                audit="VMware coordination policy create:")
    def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        with field_errors("vmware_coord_policy_create"):
            return self.repo.create(data).to_dict()

    @api_method(VMwareCoordPolicyUpdateArgs, VMwareCoordPolicyUpdateResult,
                audit="VMware coordination policy update:")
    def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        with field_errors("vmware_coord_policy_update"):
            return self.repo.update(id_, data).to_dict()

    @api_method(VMwareCoordPolicyDeleteArgs, VMwareCoordPolicyDeleteResult,
                audit="VMware coordination policy delete:")
    def do_delete(self, id_: int) -> bool:
        with field_errors("vmware_coord_policy_delete"):
            self.repo.delete(id_)
        return True


class VMwareCoordConfigService(ConfigService):
    """Limits, deadlines, the default ladder, the reconcile interval and the marker age."""

    class Config:
        namespace = "vmware_coord.config"
        datastore = "vmware_coord.config"
        datastore_extend = "vmware_coord.config.extend"
        cli_namespace = "storage.vmware_coord.config"
        entry = VMwareCoordConfigEntry
        role_prefix = "SNAPSHOT_TASK"

    @private
    def extend(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], **config_document(row["document"])}

    @api_method(VMwareCoordConfigUpdateArgs, VMwareCoordConfigUpdateResult,
                audit="VMware coordination settings update")
    def do_update(self, data: dict[str, Any]) -> dict[str, Any]:
        schema_name = "vmware_coord_config_update"
        old = self.middleware.call_sync("vmware_coord.config.config")
        if "journal_path" in data:
            verrors = ValidationErrors()
            verrors.add(f"{schema_name}.journal_path",
                        "is fixed on TrueNAS: the journal lives on the system dataset")
            raise verrors
        new = {k: v for k, v in old.items() if k != "id"} | data
        with field_errors(schema_name, document_field="vmware_coord_config"):
            parse_settings(new, field="vmware_coord_config")
        self.middleware.call_sync("datastore.update", self._config.datastore, old["id"], {"document": new})
        return self.middleware.call_sync("vmware_coord.config.config")


class VMwareCoordEndpointService(CRUDService):
    """Connection settings (port, certificate pin, timeouts) per host of the VMware mappings."""

    class Config:
        namespace = "vmware_coord.endpoint"
        datastore = ENDPOINT_TABLE
        datastore_extend = "vmware_coord.endpoint.extend"
        cli_namespace = "storage.vmware_coord.endpoint"
        entry = VMwareCoordEndpointEntry
        role_prefix = "SNAPSHOT_TASK"

    @private
    def extend(self, row: dict[str, Any]) -> dict[str, Any]:
        props = schemas.load_schema("endpoint")["properties"]
        defaults = {k: props[k].get("default") for k in ENDPOINT_SETTINGS}
        return {"id": row["id"], "hostname": row["hostname"], **defaults, **row["document"]}

    def _validated(self, schema_name: str, data: dict[str, Any], id_: int | None = None) -> dict[str, Any]:
        verrors = ValidationErrors()
        hostname = data.get("hostname")
        hosts = {r["hostname"].lower() for r in self.middleware.call_sync("vmware.query")}
        if not isinstance(hostname, str) or hostname.lower() not in hosts:
            verrors.add(f"{schema_name}.hostname", "must be the host of a VMware-Snapshots mapping "
                        f"(known: {', '.join(sorted(hosts)) or 'none'})")
        elif any(r["hostname"].lower() == hostname.lower() and r["id"] != id_
                 for r in self.middleware.call_sync("datastore.query", ENDPOINT_TABLE)):
            verrors.add(f"{schema_name}.hostname", f"settings for {hostname} already exist")
        for key in ("host", "username", "id"):
            if key in data:
                verrors.add(f"{schema_name}.{key}", "comes from the VMware-Snapshots mapping; leave it out")
        verrors.check()
        settings = {k: v for k, v in data.items() if k != "hostname"}
        with field_errors(schema_name, document_field="endpoint"):
            schemas.validate("endpoint", endpoint_document(hostname, "mapping-user", settings),
                             field="endpoint")
        return settings

    @api_method(VMwareCoordEndpointCreateArgs, VMwareCoordEndpointCreateResult,
                audit="VMware coordination endpoint create:")
    def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        settings = self._validated("vmware_coord_endpoint_create", data)
        new_id = self.middleware.call_sync("datastore.insert", ENDPOINT_TABLE,
                                           {"hostname": data["hostname"], "document": settings})
        return self._instance(new_id)

    @api_method(VMwareCoordEndpointUpdateArgs, VMwareCoordEndpointUpdateResult,
                audit="VMware coordination endpoint update:")
    def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        old = self._instance(id_)
        merged = {k: v for k, v in old.items() if k != "id"} | data
        settings = self._validated("vmware_coord_endpoint_update", merged, id_)
        self.middleware.call_sync("datastore.update", ENDPOINT_TABLE, id_,
                                  {"hostname": merged["hostname"], "document": settings})
        return self._instance(id_)

    @api_method(VMwareCoordEndpointDeleteArgs, VMwareCoordEndpointDeleteResult,
                audit="VMware coordination endpoint delete:")
    def do_delete(self, id_: int) -> bool:
        self._instance(id_)
        self.middleware.call_sync("datastore.delete", ENDPOINT_TABLE, id_)
        return True

    def _instance(self, id_: int) -> dict[str, Any]:
        return self.middleware.call_sync("vmware_coord.endpoint.get_instance", id_)

    @api_method(VMwareCoordEndpointPinArgs, VMwareCoordEndpointPinResult, roles=ROLE_WRITE,
                audit="VMware coordination certificate pin:")
    def pin(self, hostname: str, sha256_fingerprint: str, port: int) -> dict[str, Any]:
        """Pin the certificate ``hostname`` presents, once it is confirmed to be ``sha256_fingerprint``.

        The one call an alert about a new or changed certificate names; refused when the host
        presents another certificate now.
        """
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        schema = "vmware_coord_endpoint_pin"
        hosts = {r["hostname"].lower() for r in self.middleware.call_sync("vmware.query")}
        verrors = ValidationErrors()
        if hostname.lower() not in hosts:
            verrors.add(f"{schema}.hostname", "must be the host of a VMware-Snapshots mapping "
                                              f"(known: {', '.join(sorted(hosts)) or 'none'})")
        try:
            wanted = normalize_fingerprint(sha256_fingerprint)
        except ValueError as exc:
            verrors.add(f"{schema}.sha256_fingerprint", str(exc))
        verrors.check()
        try:
            presented = server_fingerprint(hostname, port)
        except VsphereError as exc:
            raise CallError(str(exc)) from None
        if presented != wanted:
            verrors.add(f"{schema}.sha256_fingerprint",
                        f"{hostname} presents {presented} now, not this certificate")
            verrors.check()
        return self._instance(self.middleware.call_sync("vmware_coord.pin_row", hostname, wanted))

    @api_method(VMwareCoordEndpointFingerprintArgs, VMwareCoordEndpointFingerprintResult, roles=ROLE_READ)
    def fingerprint(self, hostname: str, port: int) -> dict[str, Any]:
        """The SHA-256 fingerprint of the certificate ``hostname`` presents, for the UI to offer pinning."""
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        try:
            value = server_fingerprint(hostname, port)
        except VsphereError as exc:
            raise CallError(str(exc)) from None
        return {"hostname": hostname, "port": port, "sha256_fingerprint": value}


class VMwareCoordService(RestoreMethods, Service):
    """Coordinated VMware + ZFS snapshots: plan, run, reconcile, history, privileges, restores."""

    class Config:
        namespace = "vmware_coord"
        cli_namespace = "storage.vmware_coord"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = Runtime(self.middleware.call_sync, send_alert=sender(self.middleware.call_sync),
                               local_guests=not VM_TAKEOVER_PROBLEMS)
        self.restores = Restores(self.runtime, self.middleware.call_sync)
        self.last_reconcile = 0.0
        page.add_route(self.middleware)   # now: the router is frozen before setup()

    @api_method(VMwareCoordPlanArgs, VMwareCoordPlanResult, roles=ROLE_READ)
    def plan(self, dataset: str, recursive: bool, exclude: list[str],
             draft: dict[str, Any] | None) -> dict[str, Any]:
        """Dry run: what a snapshot of ``dataset`` would do to each VM, and why. Changes nothing.

        With ``draft`` ({"policy": document, "id": id or null}): as if that policy were saved,
        so the UI can show what a new or edited policy changes before it is saved.
        """
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        with field_errors("vmware_coord_plan.draft"):
            return self.runtime.plan(dataset, recursive, exclude, draft)

    @api_method(VMwareCoordRunArgs, VMwareCoordRunResult, roles=ROLE_WRITE,
                audit="VMware coordinated snapshot:")
    @job(lock=lambda args: f"vmware_coord_run:{args[0] if args else ''}")
    def run(self, job: Any, dataset: str, recursive: bool, name: str | None) -> dict[str, Any]:
        """A manual coordinated snapshot: VMware snapshots, the ZFS snapshot, their removal."""
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        job.set_progress(5, f"preparing the VMs of {dataset}")

        def progress(message: str, _outcome: Any) -> None:
            job.set_progress(None, message)

        report = self.runtime.run(dataset, recursive, name, progress)
        job.set_progress(100, f"{report.get('snapshot')}: vmsynced={'Y' if report['vmsynced'] else 'N'}")
        return report

    @api_method(VMwareCoordReconcileArgs, VMwareCoordReconcileResult, roles=ROLE_WRITE)
    @job(lock="vmware_coord_reconcile", lock_queue_size=1)
    def reconcile(self, job: Any) -> dict[str, Any]:
        """Finish interrupted runs; remove this product's VMware snapshots that no run owns;
        finish or undo interrupted restores."""
        job.set_progress(10, "reconciling")
        result = self.runtime.reconcile()
        if "skipped" not in result:   # VMware activity blocked: restores wait too
            job.set_progress(70, "settling interrupted restores")
            result["restores"] = self.restores.reconcile()
        self.last_reconcile = time.monotonic()
        job.set_progress(100, f"still open: {result.get('still_open', 0)}")
        return result

    @api_method(VMwareCoordRunsArgs, VMwareCoordRunsResult, roles=ROLE_READ)
    def runs(self, limit: int) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        return self.runtime.runs(limit)

    @api_method(VMwareCoordManifestArgs, VMwareCoordManifestResult, roles=ROLE_READ)
    def manifest(self, run: str) -> dict[str, Any] | None:
        """The per-VM manifest of a run (by run id, or by the snapshot it made)."""
        return self.runtime.manifest(run)

    @api_method(VMwareCoordCheckPrivilegesArgs, VMwareCoordCheckPrivilegesResult, roles=ROLE_READ)
    def check_privileges(self, mapping_id: int) -> dict[str, Any]:
        """Which vCenter privileges the mapping's account lacks on its datastore and VMs."""
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        try:
            return self.runtime.check_privileges(str(mapping_id))
        except LookupError as exc:
            raise InstanceNotFound(str(exc)) from None
        except VsphereError as exc:
            raise CallError(str(exc)) from None

    # --- private: setup, periodic reconcile, the stock hooks' bodies ------------------------

    @api_method(VMwareCoordDatasetFlagsArgs, VMwareCoordDatasetFlagsResult, roles=ROLE_READ)
    def dataset_flags(self) -> list[str]:
        """Datasets that carry freenas:vmsynced themselves (left by stock TrueNAS): every later
        snapshot of them inherits it, true or not."""
        return self.runtime.dataset_flags()

    @api_method(VMwareCoordClearDatasetFlagsArgs, VMwareCoordClearDatasetFlagsResult, roles=ROLE_WRITE,
                audit="VMware coordination clear dataset flags")
    def clear_dataset_flags(self) -> list[str]:
        """Remove freenas:vmsynced from those datasets; returns the datasets cleared."""
        return self.runtime.clear_dataset_flags()

    @private
    def pin_row(self, hostname: str, fingerprint: str) -> int:
        return self.runtime.pin(hostname, fingerprint)

    @private
    def startup(self) -> None:
        """What setup needs, each step on its own: tables, the takeover alert, the
        trust baseline, stock's dataset flags; then a reconcile in the background."""
        for ddl in table_ddl():
            self.middleware.call_sync("datastore.execute", ddl)
        problems = "; ".join([*TAKEOVER_PROBLEMS, *VM_TAKEOVER_PROBLEMS])
        self.runtime.apply([AlertOp("create", TAKEOVER, {"key": "takeover", "problems": problems})]
                           if problems else [AlertOp("delete", TAKEOVER, "takeover")])
        for step in (self.runtime.record_trust_baseline, self.runtime.flag_alerts):
            try:
                step()
            except Exception:  # noqa: BLE001 - one failed step does not stop the others
                log.warning("truenas-vmware-coord: %s failed", step.__name__, exc_info=True)
        # A job: it runs in the background, so a slow vCenter never delays startup.
        self.middleware.call_sync("vmware_coord.reconcile")

    @periodic(60, run_on_start=False)
    @private
    def reconcile_tick(self) -> None:
        interval = self.runtime.settings().reconcile_interval_s
        if time.monotonic() - self.last_reconcile >= interval:
            self.last_reconcile = time.monotonic()
            self.middleware.call_sync("vmware_coord.reconcile")

    @private
    def hook_periodic_begin(self, task_id: int) -> dict[str, Any] | None:
        """What periodic_snapshot_task_begin returns: the task's scope when a mapping is in it."""
        task = self.middleware.call_sync("pool.snapshottask.query", [["id", "=", task_id]], {"get": True})
        # 26.0 and later return a typed model here (TS-26.0.0-BETA.3 plugins/snapshot.py:60,
        # service/crud_service.py:174-179), 25.10 a dict.
        task = task.model_dump() if hasattr(task, "model_dump") else dict(task)
        scope = {"dataset": task["dataset"], "recursive": task["recursive"],
                 "exclude": list(task.get("exclude") or []), "task_id": task_id,
                 "naming_schema": task.get("naming_schema"), "allow_empty": task.get("allow_empty", True)}
        in_scope = self.runtime.has_mappings(scope["dataset"], scope["recursive"], scope["exclude"])
        return scope if in_scope else None

    @private
    def hook_begin(self, scope: dict[str, Any]) -> dict[str, Any] | None:
        hook = {k: scope.get(k) for k in ("task_id", "naming_schema", "allow_empty")}
        return self.runtime.begin(scope["dataset"], scope["recursive"], scope.get("exclude") or [], hook)

    @private
    def hook_manual_begin(self, dataset: str, recursive: bool) -> dict[str, Any] | None:
        """A manual snapshot with VMware sync (also TrueCloud's zvol backups).

        The stock creator writes freenas:vmsynced=Y on the *dataset* when the context says
        vmsynced (TS-25.10.6 plugins/zfs_/snapshot.py:190-191; TS-26.0.0-BETA.3
        plugins/pool_/snapshot.py:338-344), which every later snapshot inherits: it is told
        False, and end labels the snapshot itself with the honest value."""
        if not self.runtime.has_mappings(dataset, recursive, []):
            return None
        context = self.runtime.begin(dataset, recursive, [], {"manual": True})
        return None if context is None else context | {"vmsynced": False}

    @private
    def hook_vms_left_to_stock(self, vm_ids: list[Any]) -> list[Any]:
        """What the stock ``vm.suspend_vms`` / ``vm.resume_suspended_vms`` may touch (takeover.py)."""
        return self.runtime.left_to_stock(list(vm_ids))

    @private
    def hook_end(self, context: dict[str, Any] | None) -> dict[str, Any] | None:
        if not context or "run_id" not in context:
            return None
        return self.runtime.end(context)
