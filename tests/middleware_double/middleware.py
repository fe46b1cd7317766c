"""A ``Middleware`` that loads plugin modules, calls methods and answers JSON-RPC like 25.10.

Mirrors TS-25.10.6:
- ``utils/plugins.py`` ``_load_plugins``: every ``Service`` subclass found in a plugin
  module's namespace is collected; classes of one namespace become a ``CompoundService``;
  a non-private service without ``cli_namespace`` is an error. Modules are imported first,
  services instantiated after, ``setup(middleware)`` of each module runs after that,
  unguarded (an exception there stops middlewared).
- ``main.py`` ``call``/``call_sync``: an asyncio loop in its own thread; ``call_sync`` from
  the loop's thread raises; a coroutine method runs on the loop, a plain one in the caller's
  thread (or an executor for ``call``); a ``@job`` method returns a ``Job`` at once.
- ``api/base/server/ws_handler/rpc.py``: the JSON-RPC 2.0 answers ``midclt`` receives
  (``-32601`` no such method, ``-32602`` "Invalid params" with ``extra`` =
  ``[[field, message, errno]]`` for ``ValidationErrors``, ``-32001`` "Method call error" for
  other errors, as ``truenas_api_client.JSONRPCError`` numbers them); job results are waited
  for (``Method.call``).
- The few services of TrueNAS the plugin calls (``network.general`` activities,
  ``pool.snapshottask.query``, ``zfs.snapshot.create/query/update`` with ``vmware_sync``
  exactly as ``plugins/zfs_/snapshot.py`` does it, ``systemdataset.config``,
  ``interface.query``, ``network.configuration.config``, ``pool.dataset.query``,
  ``iscsi.extent.query``), backed by the real zfs-fuse pool through the ``zfs`` command;
  ``sharing.nfs``, ``dnsclient.forward_lookup`` and ``service.query`` for restores
  (``sharing.py``), ``iscsi.extent`` and ``iscsi.targetextent`` for restores of zvols
  (``iscsi.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from truenas_vmware_coord.zfs.shell import LocalShell, Shell, ShellError

from . import alerts as alerts_mod
from . import alerts_typed
from .datastore import DatastoreService, filter_list
from .framework import (
    ABSTRACT_SERVICES,
    CallError,
    CallException,
    CompoundService,
    Job,
    NetworkActivityDisabled,
    Service,
    ValidationError,
    ValidationErrors,
)
from .iscsi import Iscsi
from .sharing import SharingNfs

log = logging.getLogger(__name__)
METHOD_NOT_FOUND, INVALID_PARAMS, TRUENAS_CALL_ERROR = -32601, -32602, -32001


def _wire(value: Any) -> Any:
    """What the websocket sends for a result that is not JSON: a model as its fields."""
    return value.model_dump() if hasattr(value, "model_dump") else str(value)


class Zfs:
    """The ``zfs`` command the NAS's services run, through a ``Shell`` (a test can put the rig's
    zvol double, tools/rig/zvol.py, in front of zfs-fuse, which has no zvols)."""

    def __init__(self) -> None:
        self.shell: Shell = LocalShell(timeout=60)

    def __call__(self, *args: str) -> str:
        try:
            return self.shell.run(["zfs", *args])
        except ShellError as exc:
            raise CallError(f"zfs {' '.join(args)}: {exc.stderr.strip()}") from None


def _exc_info(exc: BaseException | None) -> dict[str, Any] | None:
    """A failed job's ``exc_info`` as TS-25.10.6 ``job.py`` ``Job.__encode__`` (:624-650) sends it:
    validation errors as ``VALIDATION`` with ``[[attribute, message, errno]]``."""
    if exc is None:
        return None
    if isinstance(exc, ValidationErrors):
        return {"repr": repr(exc), "type": "VALIDATION", "errno": None, "extra": [list(e) for e in exc]}
    if isinstance(exc, ValidationError):
        return {"repr": repr(exc), "type": "VALIDATION", "errno": exc.errno,
                "extra": [[exc.attribute, exc.errmsg, exc.errno]]}
    errno_ = exc.errno if isinstance(exc, CallError) else None
    extra = exc.extra if isinstance(exc, CallError) else None
    return {"repr": repr(exc), "type": type(exc).__name__, "errno": errno_,
            "extra": json.loads(json.dumps(extra, default=str))}


class NetworkGeneral:
    def __init__(self) -> None:
        self.activities: dict[str, str] = {}
        self.blocked: set[str] = set()

    def register_activity(self, name: str, description: str) -> None:
        if name in self.activities:
            raise RuntimeError(f"Network activity {name} is already registered")
        self.activities[name] = description

    def can_perform_activity(self, name: str) -> bool:
        if name not in self.activities:
            raise RuntimeError(f"Unknown network activity {name}")
        return name not in self.blocked

    def will_perform_activity(self, name: str) -> None:
        if not self.can_perform_activity(name):
            raise NetworkActivityDisabled(f'Network activity "{self.activities[name]}" is disabled')


def over_the_client(value: Any) -> Any:
    """A value as a process-pool worker receives it from middlewared, or sends it back: JSON.

    ``zfs.snapshot`` runs in middlewared's process pool (TS-25.10.6 ``plugins/zfs_/snapshot.py:18``
    ``process_pool = True``), where ``call_sync`` of another service goes over a websocket client
    (``worker.py:50-83``, the last line ``self.client.call``). So ``vmware.snapshot_begin``'s context
    reaches ``vmware.snapshot_end`` serialised twice (result to the worker, argument back): tuples
    become lists, keys strings, and what JSON cannot carry fails. (The client's ``ejson`` also
    carries datetimes and sets; plain JSON here is the stricter of the two.)
    """
    return json.loads(json.dumps(value))


class ZfsSnapshot:
    """``zfs.snapshot`` of 25.10 (plugins/zfs_/snapshot.py) over the ``zfs`` command; the VMware
    context crosses JSON both ways, as from the process pool it runs in (:func:`over_the_client`)."""

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        dataset, name, recursive = data["dataset"], data["name"], data.get("recursive", False)
        vmware_context = None
        if data.get("vmware_sync"):
            vmware_context = over_the_client(
                self.middleware.call_sync("vmware.snapshot_begin", dataset, recursive))
        try:
            props = [a for k, v in sorted((data.get("properties") or {}).items()) for a in ("-o", f"{k}={v}")]
            self.middleware.zfs("snapshot", *(["-r"] if recursive else []), *props, f"{dataset}@{name}")
            if vmware_context and vmware_context["vmsynced"]:
                # What 25.10 does: the property lands on the dataset, not on the snapshot.
                self.middleware.zfs("set", "freenas:vmsynced=Y", dataset)
        finally:
            if vmware_context:
                self.middleware.call_sync("vmware.snapshot_end", over_the_client(vmware_context))
        return self.query([["id", "=", f"{dataset}@{name}"]], {"get": True})

    def query(self, filters: list | None = None, options: dict | None = None) -> Any:
        # zfs-fuse has neither ``list -p`` nor ``createtxg``: creation comes from ``get -p`` and
        # the txg stand-in from the listing order (per dataset, oldest first, as ZFS lists them).
        names = self.middleware.zfs("list", "-H", "-t", "snapshot", "-o", "name").split()
        created = dict(line.split("\t") for line in self.middleware.zfs(
            "get", "-H", "-p", "-o", "name,value", "creation", *names).splitlines()) if names else {}
        rows = []
        for txg, name in enumerate(names):
            dataset, _, snap = name.partition("@")
            rows.append({"id": name, "name": name, "dataset": dataset, "snapshot_name": snap,
                         "createtxg": str(txg),
                         "properties": {"creation": {"rawvalue": created[name], "value": created[name]}}})
        return filter_list(rows, filters, options)

    def update(self, snap_id: str, data: dict[str, Any]) -> dict[str, Any]:
        for prop in data["user_properties_update"]:
            if prop.get("remove"):
                self.middleware.zfs("inherit", prop["key"], snap_id)
            else:
                self.middleware.zfs("set", f"{prop['key']}={prop['value']}", snap_id)
        return self.query([["id", "=", snap_id]], {"get": True})


class PoolSnapshot25:
    """``pool.snapshot`` of 25.10: delegates to ``zfs.snapshot`` (TS-25.10.6
    ``plugins/pool_/snapshot.py:49-77``)."""

    def __init__(self, zfs_snapshot: ZfsSnapshot) -> None:
        self.create, self.query, self.update = zfs_snapshot.create, zfs_snapshot.query, zfs_snapshot.update


class PoolSnapshot26:
    """``pool.snapshot`` of 26.0 and 27, with ``zfs.snapshot.*`` gone (TS-26.0.0-BETA.3
    ``plugins/pool_/snapshot.py``): ``create`` (:292-364) sets the user properties at
    creation and, when the VMware begin context says vmsynced, ``freenas:vmsynced=Y`` on
    the dataset (:338-344), ``snapshot_end`` in ``finally`` (:356-357); ``query`` (:191-290)
    returns no ZFS property unless ``extra.properties`` names it, and user properties only
    with ``extra.retention``; ``update`` (:366-370) sets nothing. Its service has no process pool
    (:36-40), so ``call_sync`` stays in middlewared and the context is handed over as the very
    object ``snapshot_begin`` returned: no JSON round trip here, unlike 25.10's ``zfs.snapshot``."""

    def __init__(self, middleware: Middleware) -> None:
        self.middleware = middleware

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        dataset, name, recursive = data["dataset"], data["name"], data.get("recursive", False)
        context = None
        if data.get("vmware_sync"):
            context = self.middleware.call_sync("vmware.snapshot_begin", dataset, recursive)
        try:
            props = [a for k, v in sorted((data.get("properties") or {}).items()) for a in ("-o", f"{k}={v}")]
            self.middleware.zfs("snapshot", *(["-r"] if recursive else []), *props, f"{dataset}@{name}")
            if context and context["vmsynced"]:
                self.middleware.zfs("set", "freenas:vmsynced=Y", dataset)
        finally:
            if context:
                self.middleware.call_sync("vmware.snapshot_end", context)
        full = f"{dataset}@{name}"
        return {"id": full, "name": full, "dataset": dataset, "snapshot_name": name}

    def query(self, filters: list | None = None, options: dict | None = None) -> Any:
        names = self.middleware.zfs("list", "-H", "-t", "snapshot", "-o", "name").split()
        wanted = ((options or {}).get("extra") or {}).get("properties") or []
        rows = []
        for name in names:
            dataset, _, snap = name.partition("@")
            row: dict[str, Any] = {"id": name, "name": name, "dataset": dataset, "snapshot_name": snap,
                                   "properties": {}}
            for prop in wanted:
                value = self.middleware.zfs("get", "-H", "-p", "-o", "value", prop, name).strip()
                row["properties"][prop] = {"value": value, "rawvalue": value, "parsed": value}
            rows.append(row)
        return filter_list(rows, filters, options)

    def update(self, snap_id: str, data: dict[str, Any]) -> None:
        return None


class PeriodicSnapshotTaskEntry(BaseModel):
    """26.0's typed ``pool.snapshottask`` entry (``api/v26_0_0/pool_snapshottask.py:28-52``):
    internal callers get this model, not a dict (``plugins/snapshot.py:60`` ``generic = True``)."""

    model_config = ConfigDict(extra="allow")
    id: int
    dataset: str
    recursive: bool
    exclude: list[str] = []
    naming_schema: str = "auto-%Y-%m-%d_%H-%M"
    allow_empty: bool = True


class _Plain:
    """A built-in service made of plain callables, with the Config bits ``call`` looks at."""

    class _config:  # noqa: N801 - mirrors Service._config
        process_pool = False

    def __init__(self, **methods: Any) -> None:
        for name, fn in methods.items():
            setattr(self, name, fn)


class Middleware:
    def __init__(self, workdir: Path, *, hostname: str = "nas", domain: str = "test.local",
                 addresses: tuple[str, ...] = ("127.0.0.1",), release: str = "25.10",
                 system_dataset: bool = True) -> None:
        """``system_dataset=False``: a NAS without a system pool, where ``systemdataset.config()``
        answers ``path: None`` (TS-25.10.6 ``plugins/sysdataset.py:119-141``: ``config_extend`` sets
        ``path`` from ``sysdataset_path``, None when the system dataset is not what is mounted at
        /var/db/system; ``api/v25_10_5/systemdataset.py:21`` ``path: str | None``)."""
        self.release = release
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.system_dataset_path: str | None = str(self.workdir / "system") if system_dataset else None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="middlewared-loop", daemon=True)
        self._thread.start()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="IoThread")
        self.services: dict[str, Any] = {}
        # main.py: the web application exists before the plugins are loaded, and its router is
        # frozen (runner.setup(), :1454) before any setup() runs (:1457).
        self.app = object()
        self.routes: list[tuple[str, str, Any]] = []
        self.router_frozen = False
        self.jobs: list[Job] = []
        self.tasks: list[asyncio.Future] = []
        self.setup_funcs: list[tuple[str, Any]] = []
        self.snapshot_tasks: list[dict[str, Any]] = []
        self.datastore = DatastoreService(self, str(self.workdir / "freenas-v1.db"))
        self.alert = (alerts_typed if release == "27" else alerts_mod).AlertService(self)
        self.network = NetworkGeneral()
        self.zfs_snapshot = ZfsSnapshot(self)
        snapshot_services: dict[str, Any] = (
            {"zfs.snapshot": self.zfs_snapshot, "pool.snapshot": PoolSnapshot25(self.zfs_snapshot)}
            if release == "25.10" else {"pool.snapshot": PoolSnapshot26(self)})
        (self.workdir / "system").mkdir(exist_ok=True)
        self.zfs = Zfs()
        self.dns: dict[str, str] = {}   # what the NAS's DNS and host name database resolve
        self.sharing_nfs = SharingNfs(self.dns, self._mountpoints)
        self.zvols: set[str] = set()    # the zvols whose /dev/zvol device exists (zfs-fuse has none)
        self.iscsi = Iscsi(lambda: self.zvols)
        self.services.update({
            "sharing.nfs": self.sharing_nfs,
            "service": _Plain(query=lambda filters=None, options=None: filter_list(
                self.sharing_nfs.services() + self.iscsi.services(), filters, options)),
            "dnsclient": _Plain(forward_lookup=self.sharing_nfs.forward_lookup),
            "datastore": self.datastore,
            "alert": _Plain(oneshot_create=self.alert.oneshot_create,
                            oneshot_delete=self.alert.oneshot_delete),
            "network.general": self.network,
            "network.configuration": _Plain(config=lambda: {"hostname": hostname, "domain": domain}),
            "interface.query": None,
            "interface": _Plain(query=lambda *a: [{"state": {"aliases": [
                {"type": "INET", "address": a_} for a_ in addresses]}}]),
            "pool.snapshottask": _Plain(query=self._snapshot_tasks),
            **snapshot_services,
            "systemdataset": _Plain(config=lambda: {"path": self.system_dataset_path}),
            "pool.dataset": _Plain(query=self._datasets),
            "iscsi.extent": _Plain(query=self.iscsi.extent_query, create=self.iscsi.extent_create,
                                   delete=self.iscsi.extent_delete),
            "iscsi.targetextent": _Plain(query=self.iscsi.mapping_query, create=self.iscsi.mapping_create),
        })
        del self.services["interface.query"]
        for name in ("alert", "network.general", "datastore", "sharing.nfs", *snapshot_services):
            obj = self.services[name]
            if not hasattr(obj, "_config"):
                obj._config = _Plain._config

    # --- plugins ------------------------------------------------------------------------

    def load_plugins(self, *modules: types.ModuleType) -> None:
        """Collect services from already imported plugin modules, as _load_plugins does."""
        found: list[type] = []
        for mod in modules:
            for attr in dir(mod):
                obj = getattr(mod, attr)
                if (isinstance(obj, type) and issubclass(obj, Service) and obj is not Service
                        and obj not in ABSTRACT_SERVICES and obj is not CompoundService):
                    found.append(obj)
            if hasattr(mod, "setup"):
                self.setup_funcs.append((mod.__name__, mod.setup))
        by_namespace: dict[str, list[type]] = defaultdict(list)
        for klass in dict.fromkeys(found):
            by_namespace[klass._config.namespace].append(klass)
        for namespace, parts in by_namespace.items():
            service = parts[0](self) if len(parts) == 1 else CompoundService(self, [p(self) for p in parts])
            cfg = service._config
            if not cfg.private and not cfg.cli_private and not cfg.cli_namespace:
                raise RuntimeError(f"Service {service!r} does not have CLI namespace set")
            self.services[namespace] = service

    def plugin_route_add(self, plugin_name: str, route: str, method: Any) -> None:
        """main.py:536-537: a route under /_plugins/<plugin_name>/<route>."""
        if self.router_frozen:
            raise RuntimeError("Cannot register a resource into frozen router.")
        self.routes.append((plugin_name, route, method))

    def run_setup(self) -> None:
        """Every module's setup(), in order and unguarded, like __plugins_setup."""
        self.router_frozen = True
        for _name, fn in self.setup_funcs:
            result = fn(self)
            if asyncio.iscoroutine(result):
                asyncio.run_coroutine_threadsafe(result, self.loop).result(60)

    def create_task(self, coro: Any) -> asyncio.Future:
        task = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self.tasks.append(task)
        return task

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.datastore.connection.close()

    # --- calling ------------------------------------------------------------------------

    def get_method(self, name: str) -> tuple[Any, Any]:
        namespace, _, method = name.rpartition(".")
        service = self.services.get(namespace)
        if service is None or not hasattr(service, method) or method.startswith("_"):
            raise CallError(f"Method {name!r} not found", 2)
        return service, getattr(service, method)

    def _start_job(self, name: str, methodobj: Any, params: tuple) -> Job:
        job = Job(name)
        self.jobs.append(job)

        def body() -> None:
            job.state = "RUNNING"
            try:
                if asyncio.iscoroutinefunction(methodobj):
                    result = asyncio.run_coroutine_threadsafe(methodobj(job, *params), self.loop).result()
                else:
                    result = methodobj(job, *params)
            except BaseException as exc:  # noqa: BLE001 - a job records its failure
                job._finish(exc=exc)
            else:
                job._finish(result)

        self.executor.submit(body)
        return job

    def call_sync(self, name: str, *params: Any) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError("You cannot use call_sync from main thread")
        _service, methodobj = self.get_method(name)
        if hasattr(methodobj, "_job"):
            return self._start_job(name, methodobj, params)
        if asyncio.iscoroutinefunction(methodobj):
            return asyncio.run_coroutine_threadsafe(methodobj(*params), self.loop).result()
        return methodobj(*params)

    async def call(self, name: str, *params: Any) -> Any:
        _service, methodobj = self.get_method(name)
        if hasattr(methodobj, "_job"):
            return self._start_job(name, methodobj, params)
        if asyncio.iscoroutinefunction(methodobj):
            return await methodobj(*params)
        return await self.loop.run_in_executor(self.executor, methodobj, *params)

    async def run_in_thread(self, fn: Any, *args: Any) -> Any:
        return await self.loop.run_in_executor(self.executor, fn, *args)

    # --- the wire -----------------------------------------------------------------------

    def rpc(self, message: dict[str, Any], wait_jobs: bool = True) -> dict[str, Any]:
        """One JSON-RPC 2.0 request as the websocket at /api/current answers it.

        A job method answers with its job id (followed with core.get_jobs), as the websocket
        does; ``wait_jobs`` answers with the job's result instead, as ``midclt call -job``.
        """
        id_ = message.get("id")
        try:
            self.get_method(message["method"])
        except CallError:
            return {"jsonrpc": "2.0", "id": id_, "error": {"code": METHOD_NOT_FOUND,
                                                          "message": "Method does not exist"}}
        try:
            result = self.call_sync(message["method"], *message.get("params", []))
            if isinstance(result, Job):
                result = result.wait_sync(raise_error=True) if wait_jobs else result.id
        except ValidationErrors as e:
            return self._error(id_, INVALID_PARAMS, "Invalid params", 22, str(e), [list(x) for x in e])
        except ValidationError as e:   # InstanceNotFound: no field (ws_handler/rpc.py:366-373)
            return self._error(id_, INVALID_PARAMS, "Invalid params", 22, str(e),
                               [[e.attribute, e.errmsg, e.errno]])
        except CallException as e:
            return self._error(id_, TRUENAS_CALL_ERROR, "Method call error", getattr(e, "errno", 14), str(e),
                               getattr(e, "extra", None))
        except Exception as e:  # noqa: BLE001 - what the server does with anything else
            return self._error(id_, TRUENAS_CALL_ERROR, "Method call error", 22, str(e) or repr(e), None)
        return {"jsonrpc": "2.0", "id": id_, "result": json.loads(json.dumps(result, default=_wire))}

    def get_jobs(self, filters: list | None = None, options: dict | None = None) -> Any:
        """core.get_jobs: the jobs with their state, progress, result, error and ``exc_info``."""
        rows = [{"id": j.id, "method": j.method, "state": j.state, "progress": dict(j.progress),
                 "result": json.loads(json.dumps(j.result, default=str)), "error": j.error,
                 "exc_info": _exc_info(j.exc)}
                for j in list(self.jobs)]
        return filter_list(rows, filters, options)

    @staticmethod
    def _error(id_: Any, code: int, message: str, errno_: int, reason: str, extra: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message, "data": {
            "error": errno_, "reason": reason, "trace": None, "extra": extra}}}

    def midclt(self, method: str, *json_args: str) -> dict[str, Any]:
        """``midclt call <method> '<json>'...``: each argument is parsed as JSON."""
        return self.rpc({"jsonrpc": "2.0", "id": 1, "method": method,
                         "params": [json.loads(a) for a in json_args]})

    # --- TrueNAS facts ------------------------------------------------------------------

    def _snapshot_tasks(self, filters: list | None = None, options: dict | None = None) -> Any:
        found = filter_list(self.snapshot_tasks, filters, options)
        if self.release == "25.10":
            return found
        if isinstance(found, dict):
            return PeriodicSnapshotTaskEntry(**found)
        return [PeriodicSnapshotTaskEntry(**row) for row in found]

    def _mountpoints(self) -> set[str]:
        out = self.zfs("list", "-H", "-o", "mountpoint", "-t", "filesystem")
        return {os.path.realpath(m) for m in out.split() if m.startswith("/")}

    def _datasets(self, filters: list | None = None, options: dict | None = None) -> list[dict[str, Any]]:
        out = self.zfs("list", "-H", "-o", "name,mountpoint,type")
        rows = [{"name": n, "mountpoint": m if m.startswith("/") else None,
                 "type": "VOLUME" if t == "volume" else "FILESYSTEM"}
                for n, m, t in (line.split("\t") for line in out.splitlines())]
        return filter_list(rows, [f for f in (filters or []) if f[0] != "pool"], options)
