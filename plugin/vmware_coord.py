"""middlewared entry module of truenas-vmware-coord (the only module importing middlewared).

It is imported by the loader that ``vmware-coord install-plugin`` places in middlewared's
``plugins/`` directory, so middlewared collects its services, alert classes and ``setup``
like those of any built-in plugin. Outside middlewared nothing imports it.

What was verified in the TrueNAS source (truenas/middleware at tag TS-25.10.6, paths under
``src/middlewared/middlewared/``; zettarepl at its TS-25.10.x tags):

- ``plugins/vmware.py``: ``VMWareService(CRUDService)``, Config ``datastore='storage.vmwareplugin'``,
  ``cli_namespace='storage.vmware'``, ``entry=VMWareEntry``, ``role_prefix='SNAPSHOT_TASK'``;
  table ``storage_vmwareplugin(id, hostname, username, password EncryptedText, filesystem,
  datastore, state JSON)``. Hooks: ``periodic_snapshot_task_begin(self, task_id)`` @private,
  returns ``{"dataset", "qs"}`` or None; ``periodic_snapshot_task_proceed(self, job, context)``
  and ``periodic_snapshot_task_end(self, job, context)`` are ``@api_method(<private models
  defined in that module>, private=True)`` over ``@job()``; ``snapshot_begin(self, dataset,
  recursive)`` and ``snapshot_end(self, context)`` @private. ``setup`` registers the network
  activity ``'vmware'`` ("VMware Snapshots"); the hooks call
  ``network.general.will_perform_activity('vmware')``. ``plugins/vmware_/snapshot_delete.py``
  adds a second ``VMWareService`` part (pending deletes), left alone here.
- ``plugins/zettarepl.py`` ``ZettareplProcess._observer``: on ``PeriodicSnapshotTaskStart``
  it calls over a local client ``vmware.periodic_snapshot_task_begin(task_id)``, then, if that
  returned something, ``vmware.periodic_snapshot_task_proceed(ctx, job=True)``; it returns
  ``message.response(properties={"freenas:vmsynced": "Y"})`` only if ``context["vmsynced"]``
  (no other property is passed); on ``PeriodicSnapshotTaskSuccess``/``Error`` it calls
  ``vmware.periodic_snapshot_task_end(context, job=True)``. zettarepl's ``notify`` swallows
  observer exceptions, and ``zettarepl.py`` creates the snapshot with ``-o k=v`` for the
  returned properties. The observer is serial: a slow begin delays every later task.
- ``plugins/zfs_/snapshot.py`` ``create``: with ``vmware_sync`` it calls
  ``vmware.snapshot_begin(dataset, recursive)`` before and ``vmware.snapshot_end(ctx)`` in a
  ``finally`` after the snapshot, and sets ``freenas:vmsynced=Y`` on the *dataset* when
  ``ctx["vmsynced"]``; ``pool.snapshot.create`` (``plugins/pool_/snapshot.py``) delegates to it.
  ``properties`` are passed at creation; ``zfs.snapshot.update`` takes
  ``user_properties_update``.
- ``service/base.py``, ``decorators.py``, ``crud_service.py``, ``config_service.py``,
  ``compound_service.py``, ``utils/plugins.py``, ``main.py``: Config keys and defaults; public
  methods need ``@api_method`` with models named ``{Service}{Method}Args/Result``; public
  CRUD/Config services need ``role_prefix`` and ``entry``; ``query``/``get_instance``/
  ``config`` models are generated with ``__module__ = entry.__module__``; one namespace over
  several classes becomes a ``CompoundService`` and a duplicated method name is a
  ``RuntimeError`` at startup; all plugin modules are imported, then services instantiated,
  then the API tables are built (method objects captured), then every ``setup()`` runs in
  order without error handling.
- ``api/base/decorator.py`` ``check_model_module``: models of public methods must have a
  ``__module__`` under ``middlewared.api.``, models of private methods must not; the result
  model has exactly one field ``result``; public non-CRUD methods need ``roles``.
  ``api/base/server/method.py``: the current API (``/api/current``, what ``midclt`` uses)
  takes the models straight from the method object; only the legacy versioned APIs look
  models up by name in ``middlewared.api.vXX_YY_Z`` (``LegacyAPIMethod``).
- ``alert/base.py``: ``AlertClass`` subclasses named ``*AlertClass`` register themselves;
  ``OneShotAlertClass.create/delete``; ``Alert(klass, args, key=...)``. ``plugins/alert.py``:
  ``oneshot_create``/``oneshot_delete`` are jobs; same class and key replaces an alert.
- ``plugins/datastore/*``: table = datastore name with '.' -> '_' from ``sa.Model``'s
  metadata; ``datastore.execute`` runs raw SQL (how this plugin creates its tables, since
  alembic migrations only run at install/upgrade). ``plugins/network_/activity.py``:
  ``can_perform_activity`` / ``will_perform_activity``.
  ``plugins/system_dataset/utils.py``: ``SYSDATASET_PATH = '/var/db/system'``.

The API-model decision. The public methods' models are defined here, then published into a
module named ``middlewared.api.vmware_coord`` that this module registers in ``sys.modules``
(``_publish``), before ``@api_method`` checks them. Why: the rule is checked on
``model.__module__`` only, and exists to keep TrueNAS's own public models in its versioned
API tree; a plugin outside the middlewared package cannot put files there without writing
into the read-only root file system again at every upgrade, and making every method private
would hide them from the API documentation and the UI's websocket user (private calls from
uid 33 are refused). ``/api/current`` uses the method's own models, so the methods work
over ``midclt`` and the websocket; the legacy versioned endpoints (``/api/v25.04.x``) do not
know these models and do not offer the methods, which is right for methods that did not
exist then. The private hook methods keep the stock models of ``plugins/vmware.py``.
"""

import contextlib
import inspect
import logging
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import middlewared.sqlalchemy as sa  # noqa: I001 - middlewared's own import spelling
from middlewared.alert.base import Alert, AlertCategory, AlertClass, AlertLevel, OneShotAlertClass
from middlewared.api import api_method
from middlewared.api.base import BaseModel
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
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable
from truenas_vmware_coord import schemas
from truenas_vmware_coord.domain.errors import InvalidInput, NotFound
from truenas_vmware_coord.domain.policy import policy_to_dict
from truenas_vmware_coord.engine.settings import parse_settings
from truenas_vmware_coord.middleware import alerts as alert_ops
from truenas_vmware_coord.middleware.facts import endpoint_document
from truenas_vmware_coord.middleware.policy_store import DatastorePolicyRepository, row_to_policy
from truenas_vmware_coord.middleware.runtime import ENDPOINT_TABLE, Runtime, config_document
from truenas_vmware_coord.vsphere.errors import VsphereError
from truenas_vmware_coord.vsphere.tls import server_fingerprint

log = logging.getLogger(__name__)

__all__ = ["VMwareCoordService", "VMwareCoordPolicyService", "VMwareCoordConfigService",
           "VMwareCoordEndpointService", "VMwareCoordConsistencyAlertClass", "VMwareCoordEndpointAlertClass",
           "VMwareCoordLeftoversAlertClass", "VMwareCoordTakeoverAlertClass", "setup"]

API_MODULE = "middlewared.api.vmware_coord"
ROLE_READ, ROLE_WRITE = ["SNAPSHOT_TASK_READ"], ["SNAPSHOT_TASK_WRITE"]
ENDPOINT_SETTINGS = ("port", "tls", "connect_timeout_seconds", "read_timeout_seconds", "limits")


def _publish(*models: type) -> None:
    """Make the public models members of ``middlewared.api.vmware_coord`` (see the docstring)."""
    module = sys.modules.get(API_MODULE)
    if module is None:
        module = types.ModuleType(API_MODULE, "Public API models of the truenas-vmware-coord plugin.")
        sys.modules[API_MODULE] = module
        sys.modules["middlewared.api"].vmware_coord = module
    for model in models:
        model.__module__ = API_MODULE
        setattr(module, model.__name__, model)


# --- datastore tables -------------------------------------------------------------------------

class VMwareCoordPolicyModel(sa.Model):
    __tablename__ = "vmware_coord_policy"

    id = sa.Column(sa.Integer(), primary_key=True)
    name = sa.Column(sa.String(64), unique=True)
    priority = sa.Column(sa.Integer(), unique=True)
    document = sa.Column(sa.JSON(), default=dict)


class VMwareCoordConfigModel(sa.Model):
    __tablename__ = "vmware_coord_config"

    id = sa.Column(sa.Integer(), primary_key=True)
    document = sa.Column(sa.JSON(), default=dict)


class VMwareCoordEndpointModel(sa.Model):
    __tablename__ = "vmware_coord_endpoint"

    id = sa.Column(sa.Integer(), primary_key=True)
    hostname = sa.Column(sa.String(253), unique=True)
    document = sa.Column(sa.JSON(), default=dict)


TABLES = (VMwareCoordPolicyModel, VMwareCoordConfigModel, VMwareCoordEndpointModel)


def table_ddl() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for each table: no migration creates a plugin's tables."""
    return [str(CreateTable(m.__table__, if_not_exists=True).compile(dialect=sqlite.dialect()))
            for m in TABLES]


# --- API models (public ones published under middlewared.api) --------------------------------

class VMwareCoordPolicyEntry(BaseModel):
    id: int
    name: str
    description: str
    enabled: bool
    priority: int
    scope: dict | None
    match: dict | None
    ladder: list[str]
    options: dict | None
    requires: str | None


class VMwareCoordPolicyCreateArgs(BaseModel):
    vmware_coord_policy_create: dict
    """A policy document; schemas/policy.json is the authority on its fields."""


class VMwareCoordPolicyCreateResult(BaseModel):
    result: VMwareCoordPolicyEntry


class VMwareCoordPolicyUpdateArgs(BaseModel):
    id: int
    vmware_coord_policy_update: dict
    """The fields to change; the merged policy is validated as a whole."""


class VMwareCoordPolicyUpdateResult(BaseModel):
    result: VMwareCoordPolicyEntry


class VMwareCoordPolicyDeleteArgs(BaseModel):
    id: int


class VMwareCoordPolicyDeleteResult(BaseModel):
    result: bool


class VMwareCoordConfigEntry(BaseModel):
    id: int
    limits: dict
    begin_deadline_seconds: int
    vm_deadline_seconds: int
    end_deadline_seconds: int
    default_policy: dict
    reconcile_interval_seconds: int
    marker_max_age_seconds: int


class VMwareCoordConfigUpdateArgs(BaseModel):
    vmware_coord_config_update: dict


class VMwareCoordConfigUpdateResult(BaseModel):
    result: VMwareCoordConfigEntry


class VMwareCoordEndpointEntry(BaseModel):
    id: int
    hostname: str
    port: int
    tls: dict
    connect_timeout_seconds: int
    read_timeout_seconds: int
    limits: dict


class VMwareCoordEndpointCreateArgs(BaseModel):
    vmware_coord_endpoint_create: dict
    """``hostname`` of a VMware-Snapshots mapping plus port, tls, timeouts (schemas/endpoint.json)."""


class VMwareCoordEndpointCreateResult(BaseModel):
    result: VMwareCoordEndpointEntry


class VMwareCoordEndpointUpdateArgs(BaseModel):
    id: int
    vmware_coord_endpoint_update: dict


class VMwareCoordEndpointUpdateResult(BaseModel):
    result: VMwareCoordEndpointEntry


class VMwareCoordEndpointDeleteArgs(BaseModel):
    id: int


class VMwareCoordEndpointDeleteResult(BaseModel):
    result: bool


class VMwareCoordEndpointFingerprintArgs(BaseModel):
    hostname: str
    port: int = 443


class VMwareCoordEndpointFingerprintResult(BaseModel):
    result: dict


class VMwareCoordPlanArgs(BaseModel):
    dataset: str
    recursive: bool = False
    exclude: list[str] = []
    draft: dict | None = None   # {"policy": <policy document>, "id": <policy id> | None}


class VMwareCoordPlanResult(BaseModel):
    result: dict


class VMwareCoordRunArgs(BaseModel):
    dataset: str
    recursive: bool = False
    name: str | None = None


class VMwareCoordRunResult(BaseModel):
    result: dict


class VMwareCoordReconcileArgs(BaseModel):
    pass


class VMwareCoordReconcileResult(BaseModel):
    result: dict


class VMwareCoordRunsArgs(BaseModel):
    limit: int = 50


class VMwareCoordRunsResult(BaseModel):
    result: list[dict]


class VMwareCoordManifestArgs(BaseModel):
    run: str
    """A run id, or a snapshot name ``dataset@name``."""


class VMwareCoordManifestResult(BaseModel):
    result: dict | None


class VMwareCoordCheckPrivilegesArgs(BaseModel):
    mapping_id: int
    """The id of a VMware-Snapshots mapping (``vmware.query``)."""


class VMwareCoordCheckPrivilegesResult(BaseModel):
    result: dict


_publish(*[obj for name, obj in list(globals().items())
           if name.startswith("VMwareCoord") and isinstance(obj, type) and issubclass(obj, BaseModel)])


# --- helpers ----------------------------------------------------------------------------------

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


# --- services ---------------------------------------------------------------------------------

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

    @api_method(VMwareCoordEndpointFingerprintArgs, VMwareCoordEndpointFingerprintResult, roles=ROLE_READ)
    def fingerprint(self, hostname: str, port: int) -> dict[str, Any]:
        """The SHA-256 fingerprint of the certificate ``hostname`` presents, for the UI to offer pinning."""
        self.middleware.call_sync("network.general.will_perform_activity", "vmware")
        try:
            value = server_fingerprint(hostname, port)
        except VsphereError as exc:
            raise CallError(str(exc)) from None
        return {"hostname": hostname, "port": port, "sha256_fingerprint": value}


class VMwareCoordService(Service):
    """Coordinated VMware + ZFS snapshots: plan, run, reconcile, history, privileges."""

    class Config:
        namespace = "vmware_coord"
        cli_namespace = "storage.vmware_coord"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = Runtime(self.middleware.call_sync)
        self.last_reconcile = 0.0

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
        """Finish interrupted runs; remove this product's VMware snapshots that no run owns."""
        job.set_progress(10, "reconciling")
        result = self.runtime.reconcile()
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

    @private
    def create_tables(self) -> None:
        for ddl in table_ddl():
            self.middleware.call_sync("datastore.execute", ddl)

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
        scope = {"dataset": task["dataset"], "recursive": task["recursive"],
                 "exclude": list(task.get("exclude") or []), "task_id": task_id}
        in_scope = self.runtime.has_mappings(scope["dataset"], scope["recursive"], scope["exclude"])
        return scope if in_scope else None

    @private
    def hook_begin(self, scope: dict[str, Any]) -> dict[str, Any] | None:
        return self.runtime.begin(scope["dataset"], scope["recursive"], scope.get("exclude") or [])

    @private
    def hook_manual_begin(self, dataset: str, recursive: bool) -> dict[str, Any] | None:
        if not self.runtime.has_mappings(dataset, recursive, []):
            return None
        return self.runtime.begin(dataset, recursive, [])

    @private
    def hook_end(self, context: dict[str, Any] | None) -> dict[str, Any] | None:
        if not context or "run_id" not in context:
            return None
        return self.runtime.end(context)


# --- alerts -----------------------------------------------------------------------------------

class _Keyed(OneShotAlertClass):
    """One alert per key; the next run replaces or clears it (no person needed)."""

    async def create(self, args: dict[str, Any]) -> Alert:
        return Alert(type(self), args, key=args["key"])

    async def delete(self, alerts: list[Alert], query: Any) -> list[Alert]:
        return [a for a in alerts if a.args["key"] != query]


class VMwareCoordConsistencyAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMs Below Their Required Consistency"
    text = ("%(count)d VM(s) on %(datastores)s (%(hostname)s) are not as consistent as their policy requires "
            "in the snapshot of %(dataset)s (run %(run_id)s): %(vms)s. See vmware_coord.manifest.")


class VMwareCoordEndpointAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMware Login or Certificate Check Failed"
    text = ("Connecting to %(hostname)s failed: %(error)s. Its VMs were snapshotted crash-consistent. "
            "A changed or self-signed certificate can be pinned with vmware_coord.endpoint.")


class VMwareCoordLeftoversAlertClass(AlertClass, _Keyed):
    category = AlertCategory.TASKS
    level = AlertLevel.WARNING
    title = "VMware Snapshots Left Behind"
    text = "%(count)d VMware snapshot(s) or power operation(s) could not be undone yet: %(details)s."


class VMwareCoordTakeoverAlertClass(AlertClass, _Keyed):
    category = AlertCategory.PLUGINS
    level = AlertLevel.ERROR
    title = "VMware Coordination Not Active"
    text = ("The stock VMware snapshot hooks do not have the expected shape (%(problems)s); the stock "
            "behaviour is left in place. Update truenas-vmware-coord for this TrueNAS version.")


# --- taking over the stock hooks ----------------------------------------------------------------

# The bodies that replace the stock hooks: the stock names and parameters exactly (middlewared
# reads the leading "self, job" from the code object), each delegating to our service.

def periodic_snapshot_task_begin(self, task_id):
    return self.middleware.call_sync("vmware_coord.hook_periodic_begin", task_id)


def periodic_snapshot_task_proceed(self, job, context):
    return self.middleware.call_sync("vmware_coord.hook_begin", _revealed(context))


def periodic_snapshot_task_end(self, job, context):
    return self.middleware.call_sync("vmware_coord.hook_end", _revealed(context))


def snapshot_begin(self, dataset, recursive):
    return self.middleware.call_sync("vmware_coord.hook_manual_begin", dataset, recursive)


def snapshot_end(self, context):
    return self.middleware.call_sync("vmware_coord.hook_end", context)


def _revealed(value: Any) -> Any:
    # The stock models type the context as Secret[Any]; with pydantic 2.10 (checked against
    # the real accept_params) the method can receive the Secret wrapper itself.
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


REPLACEMENTS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    periodic_snapshot_task_begin, periodic_snapshot_task_proceed, periodic_snapshot_task_end,
    snapshot_begin, snapshot_end)}
# name -> (parameters, is a job): the stock shape at TS-25.10.6
HOOKS: dict[str, tuple[tuple[str, ...], bool]] = {
    name: (tuple(inspect.signature(fn).parameters), "job" in inspect.signature(fn).parameters)
    for name, fn in REPLACEMENTS.items()}


def shape_problems(cls: type) -> list[str]:
    problems = []
    for name, (params, is_job) in HOOKS.items():
        fn = cls.__dict__.get(name)
        if not callable(fn):
            problems.append(f"{name} is missing")
            continue
        found = tuple(inspect.signature(fn).parameters)
        if found != params:
            problems.append(f"{name}{found} instead of {params}")
        if not getattr(fn, "_private", False):
            problems.append(f"{name} is not private")
        if hasattr(fn, "_job") != is_job:
            problems.append(f"{name} is {'not ' if is_job else ''}a job")
    return problems


def _replacement(name: str, old: Callable[..., Any]) -> Callable[..., Any]:
    """A fresh copy of our body, decorated as the stock method was (private, job, models)."""
    body = REPLACEMENTS[name]
    hook = types.FunctionType(body.__code__, body.__globals__, name, body.__defaults__, body.__closure__)
    hook.__qualname__ = f"VMWareService.{name}"
    hook.__doc__ = f"{old.__doc__ or ''}\n(truenas-vmware-coord: the coordinated engine runs here)"
    hook._vmware_coord = True  # type: ignore[attr-defined]
    if hasattr(old, "_job"):
        hook = job(**old._job)(hook)  # type: ignore[attr-defined]
    if hasattr(old, "new_style_accepts"):
        # The stock private models, so the call validates exactly as before.
        return api_method(old.new_style_accepts, old.new_style_returns, private=True)(hook)
    return private(hook)


def take_over(cls: type) -> list[str]:
    """Replace the stock hooks on the class, all or none; the problems when refused."""
    if all(getattr(cls.__dict__.get(n), "_vmware_coord", False) for n in HOOKS):
        return []
    problems = shape_problems(cls)
    if problems:
        return problems
    replacements = {name: _replacement(name, cls.__dict__[name]) for name in HOOKS}  # may raise: nothing set
    for name, fn in replacements.items():
        setattr(cls, name, fn)
    return []


def _take_over_stock() -> list[str]:
    try:
        from middlewared.plugins import vmware as stock
        return take_over(stock.VMWareService)
    except Exception as exc:  # noqa: BLE001 - any surprise leaves the stock hooks in place
        return [f"cannot inspect the stock plugin: {type(exc).__name__}: {exc}"]


# At import time: services are instantiated and their methods captured only after every plugin
# module has been imported, so a change made later (in setup) would not reach zettarepl.
TAKEOVER_PROBLEMS = _take_over_stock()
if TAKEOVER_PROBLEMS:
    log.error("truenas-vmware-coord: stock VMware hooks left in place: %s", "; ".join(TAKEOVER_PROBLEMS))


async def setup(middleware: Any) -> None:
    """Create the tables and start a reconcile in the background; never raises."""
    try:
        await middleware.call("vmware_coord.create_tables")
    except Exception:  # noqa: BLE001 - middlewared must start whatever happens here
        log.error("truenas-vmware-coord: creating tables failed", exc_info=True)
        return
    ops = ([alert_ops.AlertOp("create", alert_ops.TAKEOVER, {"key": "takeover",
                                                            "problems": "; ".join(TAKEOVER_PROBLEMS)})]
           if TAKEOVER_PROBLEMS else [alert_ops.AlertOp("delete", alert_ops.TAKEOVER, "takeover")])
    for op in ops:
        try:
            await middleware.call(f"alert.oneshot_{op.action}", op.klass, op.args)
        except Exception:  # noqa: BLE001
            log.warning("truenas-vmware-coord: alert %s failed", op.klass, exc_info=True)
    try:
        # A job: it runs in the background, so a slow vCenter never delays startup.
        await middleware.call("vmware_coord.reconcile")
    except Exception:  # noqa: BLE001
        log.warning("truenas-vmware-coord: the startup reconcile could not start", exc_info=True)
