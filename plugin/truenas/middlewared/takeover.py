"""Taking over the stock VMware snapshot hooks of ``plugins/vmware.py``.

At import time: services are instantiated and their methods captured only after every
plugin module has been imported, so a change made later (in setup) would not reach
zettarepl. The stock methods are replaced on the class, all or none, keeping their
decorators (private, job, models) and exact signatures; a stock shape this module does not
know is left alone and reported (the "VMware Coordination Not Active" alert).

TrueNAS's own pause of its VMs around snapshots (``vm.suspend_vms`` and
``vm.resume_suspended_vms`` of ``plugins/vm/vm_lifecycle.py``: TS-25.10.6 :139-161,
TS-26.0.0-BETA.3 :122-144; ``truenas/guests.py`` says who calls them) is wrapped, not
replaced: the stock method still runs, for every VM but those a live run of this plugin
holds (it froze or paused them, or its policy left them alone). When that shape is not the
one known here, nothing is wrapped, the plugin coordinates no local VM (else a guest could
be frozen and paused at once), and the alert says so.
"""

import inspect
import logging
import types
from collections.abc import Callable
from typing import Any

from middlewared.api import api_method
from middlewared.service import job, private

log = logging.getLogger(__name__)


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


# TrueNAS's pause of its VMs: (parameters, private) at TS-25.10.6 and TS-26.0.0-BETA.3.
VM_HOOKS = ("suspend_vms", "resume_suspended_vms")
VM_HOOK_PARAMETERS = ("self", "vm_ids")


def _left_to_stock(name: str, stock: Callable[..., Any]) -> Callable[..., Any]:
    """The stock method, given only the VMs no live run of this plugin holds."""

    def hook(self, vm_ids):
        return stock(self, self.middleware.call_sync("vmware_coord.hook_vms_left_to_stock", list(vm_ids)))

    hook.__name__, hook.__qualname__ = name, f"VMService.{name}"
    hook.__doc__ = f"{stock.__doc__ or ''}\n(truenas-vmware-coord: not for the VMs it coordinates)"
    hook._vmware_coord = True  # type: ignore[attr-defined]
    return private(hook)


def vm_shape_problems(cls: type) -> list[str]:
    problems = []
    for name in VM_HOOKS:
        fn = cls.__dict__.get(name)
        if not callable(fn):
            problems.append(f"{name} is missing")
        elif tuple(inspect.signature(fn).parameters) != VM_HOOK_PARAMETERS:
            found = tuple(inspect.signature(fn).parameters)
            problems.append(f"{name}{found} instead of {VM_HOOK_PARAMETERS}")
        elif not getattr(fn, "_private", False) or hasattr(fn, "_job"):
            problems.append(f"{name} is not a private plain method")
    return problems


def take_over_vm_pause(cls: type) -> list[str]:
    """Wrap the stock pause on the class, both methods or none; the problems when refused."""
    if all(getattr(cls.__dict__.get(n), "_vmware_coord", False) for n in VM_HOOKS):
        return []
    problems = vm_shape_problems(cls)
    if not problems:
        for name in VM_HOOKS:
            setattr(cls, name, _left_to_stock(name, cls.__dict__[name]))
    return problems


def _take_over_vm_pause() -> list[str]:
    try:
        from middlewared.plugins.vm import vm_lifecycle
        return [f"local VMs: {p}" for p in take_over_vm_pause(vm_lifecycle.VMService)]
    except Exception as exc:  # noqa: BLE001 - any surprise leaves the stock pause in place
        return [f"local VMs: cannot inspect the stock VM plugin: {type(exc).__name__}: {exc}"]


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
VM_TAKEOVER_PROBLEMS = _take_over_vm_pause()
if VM_TAKEOVER_PROBLEMS:
    log.error("truenas-vmware-coord: TrueNAS's own VM pause left in place, local VMs not coordinated: %s",
              "; ".join(VM_TAKEOVER_PROBLEMS))
