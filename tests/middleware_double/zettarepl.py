"""zettarepl's side of a periodic snapshot task, message by message.

- ``Observer`` is ``ZettareplProcess._observer`` of TS-25.10.6 ``plugins/zettarepl.py``
  (:192-233): Start -> ``begin`` then, if it returned something, ``proceed`` as a job; then
  the local VMs: ``vm.periodic_snapshot_task_begin`` and, if it found any,
  ``vm.suspend_vms`` with their ids; the response carries ``{"freenas:vmsynced": "Y"}``
  only when ``context["vmsynced"]``; Success/Error -> ``end`` as a job when a context was
  kept, then ``vm.resume_suspended_vms`` with the VMs kept. Every exception is logged and
  swallowed, as there.
- ``run_tick`` is zettarepl's ``_run_periodic_snapshot_tasks`` for one tick (truenas/zettarepl
  stable/goldeye ``zettarepl/zettarepl.py:123-192``): tasks sorted recursive first, then
  without exclude first, run one after another; the snapshot named by the task's naming
  schema at the tick's time; a snapshot already created in this tick gets Success without
  Start (:166-170); otherwise ``notify`` Start (an observer exception yields the default
  empty response), the snapshot created with ``-o k=v`` for the response's properties —
  except for a task with ``exclude``, which zettarepl creates by a channel program that drops
  them (``snapshot/create.py:32-36``; zfs-fuse has no ``zfs program``, so each dataset not
  excluded is snapshotted here, without properties) — then Success or Error; after every
  task, empty snapshots (``written`` == 0) of tasks without ``allow_empty`` are destroyed
  (:189-192, ``snapshot/empty.py``), after their Success reached the observer.
- Task ids are ``task_<id>``, as middlewared names them (``plugins/zettarepl.py:627``).
- The local client of the observer is ``Middleware.rpc``: the same JSON-RPC calls
  ``Client(private_methods=True).call(..., job=True)`` makes.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import subprocess
from collections.abc import Callable
from typing import Any

log = logging.getLogger("middlewared.plugins.zettarepl")


@dataclasses.dataclass
class PeriodicSnapshotTaskStartResponse:
    properties: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PeriodicSnapshotTaskStart:
    task_id: str
    response = PeriodicSnapshotTaskStartResponse


@dataclasses.dataclass
class PeriodicSnapshotTaskSuccess:
    task_id: str
    dataset: str
    snapshot: str
    already_existed: bool = False


@dataclasses.dataclass
class PeriodicSnapshotTaskError:
    task_id: str
    error: str


class ClientError(Exception):
    pass


class Client:
    """The observer's local middleware client (JSON-RPC, private methods, jobs waited for)."""

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.calls: list[str] = []

    def call(self, method: str, *params: Any, job: bool = False) -> Any:
        self.calls.append(method)
        answer = self.middleware.rpc({"jsonrpc": "2.0", "id": len(self.calls), "method": method,
                                      "params": list(params)})
        if "error" in answer:
            raise ClientError(answer["error"])
        return answer["result"]


class Observer:
    def __init__(self, middleware: Any) -> None:
        self.client = Client(middleware)
        self.vmware_contexts: dict[int, Any] = {}
        self.vm_contexts: dict[int, Any] = {}
        self.messages: list[Any] = []

    def __call__(self, message: Any) -> Any:
        self.messages.append(message)
        try:
            task_id = int(message.task_id.split("_")[-1])
            if isinstance(message, PeriodicSnapshotTaskStart):
                context = None
                if begin_context := self.client.call("vmware.periodic_snapshot_task_begin", task_id):
                    context = self.client.call("vmware.periodic_snapshot_task_proceed", begin_context,
                                               job=True)
                if vm_context := self.client.call("vm.periodic_snapshot_task_begin", task_id):
                    self.client.call("vm.suspend_vms", list(vm_context))
                self.vm_contexts[task_id] = vm_context
                self.vmware_contexts[task_id] = context
                if context and context["vmsynced"]:
                    return PeriodicSnapshotTaskStartResponse(properties={"freenas:vmsynced": "Y"})
            if isinstance(message, PeriodicSnapshotTaskSuccess | PeriodicSnapshotTaskError):
                context = self.vmware_contexts.pop(task_id, None)
                vm_context = self.vm_contexts.pop(task_id, None)
                if context:
                    self.client.call("vmware.periodic_snapshot_task_end", context, job=True)
                if vm_context:
                    self.client.call("vm.resume_suspended_vms", list(vm_context))
        except Exception:
            log.error("Unhandled exception in ZettareplProcess._observer", exc_info=True)
        return None


def notify(observer: Observer, message: Any) -> Any:
    result = None
    try:
        result = observer(message)
    except Exception:
        log.error("Unhandled exception in observer %r", observer, exc_info=True)
    if getattr(message, "response", None) is not None and result is None:
        result = message.response()
    return result


@dataclasses.dataclass
class TickResult:
    task: dict[str, Any]
    snapshot: str                 # dataset@name
    options: Any                  # the Start response; None for Success without Start
    final: Any                    # PeriodicSnapshotTaskSuccess or PeriodicSnapshotTaskError
    destroyed: bool = False       # as empty, after Success (allow_empty false)


def _zfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["zfs", *args], capture_output=True, text=True)


def _create(task: dict[str, Any], name: str, properties: dict[str, str]) -> subprocess.CompletedProcess:
    if not task.get("exclude"):
        args = ["snapshot", *(["-r"] if task["recursive"] else [])]
        for key, value in properties.items():
            args += ["-o", f"{key}={value}"]
        return _zfs(*args, f"{task['dataset']}@{name}")
    listed = _zfs("list", "-H", "-o", "name", "-r", task["dataset"]).stdout.split()
    kept = [d for d in listed if not any(d == e or d.startswith(f"{e}/") for e in task["exclude"])]
    for dataset in kept:   # the channel program's effect: no properties
        proc = _zfs("snapshot", f"{dataset}@{name}")
        if proc.returncode != 0:
            return proc
    return subprocess.CompletedProcess([], 0, "", "")


def _empty(snapshot: str) -> bool:
    """zettarepl's test is ``written`` == 0; zfs-fuse has no ``written``, so here: the same
    ``referenced`` as the dataset's previous snapshot (nothing changed in between)."""
    dataset = snapshot.partition("@")[0]
    older = [s for s in _zfs("list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset).stdout.split()
             if s.partition("@")[0] == dataset]
    if older.index(snapshot) == 0:
        return False
    sizes = [_zfs("get", "-H", "-p", "-o", "value", "referenced", s).stdout.strip()
             for s in (older[older.index(snapshot) - 1], snapshot)]
    return sizes[0] == sizes[1]


def run_tick(observer: Observer, tasks: list[dict[str, Any]], now: datetime.datetime | None = None,
             after_create: Callable[[str], None] | None = None) -> list[TickResult]:
    """One tick of periodic snapshot tasks, as zettarepl runs them; ``after_create(snapshot)``
    runs between a snapshot's creation and its Success (what else happens on a NAS then)."""
    now = now or datetime.datetime.now()
    ordered = sorted(tasks, key=lambda t: (not t["recursive"], bool(t.get("exclude"))))
    created: set[str] = set()
    results = []
    for task in ordered:
        task_id = f"task_{task['id']}"
        name = now.strftime(task["naming_schema"])
        snapshot = f"{task['dataset']}@{name}"
        if snapshot in created:
            final: Any = PeriodicSnapshotTaskSuccess(task_id, task["dataset"], name)
            notify(observer, final)
            results.append(TickResult(task, snapshot, None, final))
            continue
        options = notify(observer, PeriodicSnapshotTaskStart(task_id))
        proc = _create(task, name, options.properties)
        if proc.returncode != 0:
            final = PeriodicSnapshotTaskError(task_id, proc.stderr.strip())
        else:
            created.add(snapshot)
            if after_create is not None:
                after_create(snapshot)
            final = PeriodicSnapshotTaskSuccess(task_id, task["dataset"], name)
        notify(observer, final)
        results.append(TickResult(task, snapshot, options, final))
    allowing = {t["dataset"] for t in tasks if t.get("allow_empty", True)}
    for result in results:
        if result.task["dataset"] in allowing or not isinstance(result.final, PeriodicSnapshotTaskSuccess):
            continue   # no task of that dataset may allow empty snapshots (snapshot/empty.py:17-37)
        if _empty(result.snapshot):
            result.destroyed = _zfs("destroy", result.snapshot).returncode == 0
    return results


def run_task(observer: Observer, task: dict[str, Any], now: datetime.datetime | None = None,
             after_create: Callable[[str], None] | None = None) -> TickResult:
    """A tick of one task."""
    return run_tick(observer, [task], now, after_create)[0]
