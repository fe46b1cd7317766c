"""Opening every endpoint of a run at once, keeping a run's sessions from its begin to its
end when both happen in one process (the TrueNAS hooks arrive as separate calls), and one
connector over several kinds of hypervisor."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..domain.model import Inventory
from .ports import Connector, Hypervisor, Unavailable, describe
from .workers import Workers, bounded

log = logging.getLogger(__name__)
CLOSE_GRACE_S = 5.0   # how long closing a session may take before it is left to expire


class SessionPool:
    """Sessions a run opened in begin, handed to its end (and closed there)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, dict[str, Hypervisor]] = {}

    def keep(self, run_id: str, sessions: dict[str, Hypervisor]) -> None:
        with self._lock:
            self._by_run[run_id] = sessions

    def take(self, run_id: str) -> dict[str, Hypervisor]:
        with self._lock:
            return self._by_run.pop(run_id, {})


class Connectors:
    """Several connectors (VMware, libvirt) as one: each endpoint id is opened by the one
    that lists it."""

    def __init__(self, *connectors: Connector) -> None:
        self._connectors = connectors

    def endpoint_ids(self) -> list[str]:
        return sorted({e for c in self._connectors for e in c.endpoint_ids()})

    def open(self, endpoint_id: str) -> Hypervisor:
        for connector in self._connectors:
            if endpoint_id in connector.endpoint_ids():
                return connector.open(endpoint_id)
        raise Unavailable(f"no endpoint {endpoint_id} is configured")


def connect_all(connector: Connector, endpoint_ids: Iterable[str], deadline: float
                ) -> tuple[dict[str, Hypervisor], dict[str, Inventory], dict[str, str]]:
    """Open every endpoint and read its inventory in parallel, within the deadline."""
    sessions: dict[str, Hypervisor] = {}
    inventories: dict[str, Inventory] = {}
    errors: dict[str, str] = {}

    def connect(endpoint_id: str) -> tuple[Hypervisor, Inventory]:
        hv = connector.open(endpoint_id)
        try:
            return hv, hv.inventory()
        except BaseException:
            hv.close()
            raise

    ids = list(endpoint_ids)
    if not ids:
        return sessions, inventories, errors
    with Workers(len(ids), "connect") as workers:
        futures = {workers.submit(connect, e): e for e in ids}
        done, pending = concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    for future in done:
        endpoint_id = futures[future]
        try:
            sessions[endpoint_id], inventories[endpoint_id] = future.result()
        except Exception as exc:  # noqa: BLE001 - an endpoint lost, the run goes on
            errors[endpoint_id] = describe(exc)
    for future in pending:
        errors[futures[future]] = "no answer before the begin deadline"
        # A late session is closed by its thread as soon as it arrives.
        future.add_done_callback(lambda late: _close_late(late, lambda answer: answer[0]))
    return sessions, inventories, errors


def open_within(connector: Connector, endpoint_id: str, timeout: float) -> Hypervisor:
    """A session, or ``Unavailable`` when opening it takes longer than ``timeout`` (a session
    that arrives later is closed at once)."""
    with Workers(1, "connect") as workers:
        future = workers.submit(connector.open, endpoint_id)
        try:
            return future.result(timeout=max(0.1, timeout))
        except concurrent.futures.TimeoutError:
            future.add_done_callback(lambda late: _close_late(late, lambda hv: hv))
            raise Unavailable(f"no answer from {endpoint_id} within {max(0.1, timeout):.3g} s "
                           "while opening a session") from None


def close_within(hv: Hypervisor) -> None:
    """Close a session within ``CLOSE_GRACE_S``: a hypervisor that stopped answering would hold
    a logout for its whole socket timeout (the session then expires on its own)."""
    try:
        bounded(hv.close, CLOSE_GRACE_S)
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        log.info("closing the session to %s: %s", hv.endpoint_id, describe(exc))


def _close_late(future: concurrent.futures.Future, session_of: Callable[[Any], Hypervisor]) -> None:
    if not future.cancelled() and future.exception() is None:
        close_within(session_of(future.result()))
