"""A manual coordinated snapshot: finish what an earlier crash left, then begin -> ZFS
snapshot -> end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ..engine.coordinator import Coordinator


def default_name(now: float | None = None) -> str:
    return time.strftime("vmware-coord-%Y%m%d-%H%M%S", time.localtime(now))


def coordinated_snapshot(coordinator: Coordinator, dataset: str,
                         take_snapshot: Callable[[dict[str, str]], str], recursive: bool = False,
                         exclude: Iterable[str] = ()) -> dict[str, Any]:
    coordinator.reconcile(sweep=False)
    return coordinator.run(dataset, take_snapshot, recursive, exclude)
