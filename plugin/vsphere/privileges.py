"""Which vCenter privileges the service account lacks, through HasPrivilegeOnEntities.

Checked on the mapping's datastore and on every VM that has files there, for the session's
own user (one call, whatever the number of VMs).
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from ..domain.strategies import STRATEGIES
from .session import Session


def needed_privileges() -> dict[str, str]:
    """Each privilege and what it is needed for, in the words the result shows: reading the
    inventory, and whatever each strategy declares (with the strategies that need it)."""
    users: dict[str, list[str]] = {}
    purpose: dict[str, str] = {}
    for name, module in STRATEGIES.items():
        for privilege, what in module.privileges.items():
            users.setdefault(privilege, []).append(name.value)
            purpose.setdefault(privilege, what)
    return {"System.Read": "read the inventory"} | {
        p: f"{purpose[p]} (strategies: {', '.join(users[p])})" for p in sorted(users)}


PRIVILEGES = needed_privileges()


def missing(availability: list[tuple[str, str, bool]]) -> dict[str, list[str]]:
    """(entity name, privilege, granted) triples -> privilege -> entities lacking it."""
    out: dict[str, list[str]] = {}
    for entity, privilege, granted in availability:
        if not granted:
            out.setdefault(privilege, []).append(entity)
    return {k: sorted(v) for k, v in sorted(out.items())}


def check(session: Session, datastore_name: str) -> dict[str, Any]:
    content = session.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    try:
        datastore = next((d for d in view.view if d.name == datastore_name), None)
    finally:
        view.Destroy()
    if datastore is None:
        return {"datastore": datastore_name, "found": False, "missing": {}, "checked": []}
    entities = [datastore, *datastore.vm]
    names = {e._moId: e.name for e in entities}
    result = content.authorizationManager.HasPrivilegeOnEntities(
        entity=entities, sessionId=content.sessionManager.currentSession.key, privId=list(PRIVILEGES))
    triples = [(names.get(r.entity._moId, r.entity._moId), p.privId, bool(p.isGranted))
               for r in result for p in r.privAvailability]
    lacking = missing(triples)
    return {"datastore": datastore_name, "found": True, "checked": sorted(PRIVILEGES),
            "entities": len(entities), "missing": lacking,
            "needed_for": {p: PRIVILEGES[p] for p in lacking}}
