"""One hypervisor operation, started and waited for within a deadline, as a ``Step``.

A refusal is ``failed`` (nothing happened); no answer, or no end before the deadline, is
``timed_out`` (it may still happen, and the journal row stays open so that end or reconcile
finds out). A task still running at the deadline is cancelled and watched for a moment
more: cancelled, it is ``failed`` (nothing to undo); done after all, it is ``ok``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..domain.strategies.base import Step
from .ports import Gone, Hypervisor, HypervisorFailure, Refused, TaskHandle, describe

CANCEL_GRACE_S = 2.0   # how long a cancelled task is watched for its final state


def refused(failure: HypervisorFailure) -> Step:
    return Step("failed", fault_type=failure.fault_type, message=failure.message,
                gone=isinstance(failure, Gone))


def call_and_wait(hv: Hypervisor, start: Callable[[], TaskHandle], deadline: float) -> Step:
    try:
        handle = start()
    except Refused as exc:
        return refused(exc)
    except Exception as exc:  # noqa: BLE001 - no answer: VMware may still act on the call
        return Step("timed_out", fault_type=getattr(exc, "fault_type", None),
                    message=describe(exc) if isinstance(exc, HypervisorFailure)
                    else f"no answer from VMware: {describe(exc)}")
    try:
        outcome = hv.wait(handle, max(0.0, deadline - time.monotonic()))
    except Exception as exc:  # noqa: BLE001 - the wait itself lost its answer
        outcome, lost = None, describe(exc)
    else:
        lost = None
    if outcome is None and lost is None:
        hv.cancel(handle)
        try:
            outcome = hv.wait(handle, CANCEL_GRACE_S)
        except Exception:  # noqa: BLE001 - unknown, as before the cancel
            outcome = None
        if outcome is not None and outcome.failure is not None:
            return Step("timed_out", fault_type=outcome.failure.fault_type, cancelled=True,
                        message="VMware did not finish before the deadline; the task was cancelled")
    if outcome is None:
        return Step("timed_out", message=lost or "VMware did not finish before the deadline")
    if outcome.failure is not None:
        return refused(outcome.failure)
    return Step("ok", result=outcome.result)

