"""zettarepl's side of a periodic snapshot task, message by message.

- ``Observer`` is ``ZettareplProcess._observer`` of TS-25.10.6 ``plugins/zettarepl.py``
  (VMware part; the local-VM suspend calls are left out): Start -> ``begin`` then, if it
  returned something, ``proceed`` as a job; the response carries
  ``{"freenas:vmsynced": "Y"}`` only when ``context["vmsynced"]``; Success/Error -> ``end``
  as a job when a context was kept. Every exception is logged and swallowed, as there.
- ``run_task`` is the loop body of zettarepl's ``zettarepl.py`` for one task: ``notify``
  Start (an observer exception yields the default empty response), ``create_snapshot`` with
  ``-o k=v`` for the response's properties, then Success or Error.
- The local client of the observer is ``Middleware.rpc``: the same JSON-RPC calls
  ``Client(private_methods=True).call(..., job=True)`` makes.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
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
                self.vmware_contexts[task_id] = context
                if context and context["vmsynced"]:
                    return PeriodicSnapshotTaskStartResponse(properties={"freenas:vmsynced": "Y"})
            if isinstance(message, PeriodicSnapshotTaskSuccess | PeriodicSnapshotTaskError):
                context = self.vmware_contexts.pop(task_id, None)
                if context:
                    self.client.call("vmware.periodic_snapshot_task_end", context, job=True)
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


def run_task(observer: Observer, task: dict[str, Any], snapshot_name: str) -> tuple[Any, Any]:
    """One periodic snapshot task; returns (the start response, the final message)."""
    task_id = f"periodic_snapshot_task_{task['id']}"
    options = notify(observer, PeriodicSnapshotTaskStart(task_id))
    args = ["zfs", "snapshot"]
    if task["recursive"]:
        args.append("-r")
    for key, value in options.properties.items():
        args += ["-o", f"{key}={value}"]
    proc = subprocess.run([*args, f"{task['dataset']}@{snapshot_name}"], capture_output=True, text=True)
    if proc.returncode != 0:
        final: Any = PeriodicSnapshotTaskError(task_id, proc.stderr.strip())
    else:
        final = PeriodicSnapshotTaskSuccess(task_id, task["dataset"], snapshot_name)
    notify(observer, final)
    return options, final
