"""Policies in middlewared's datastore: the ``PolicyRepository`` the plugin's CRUD uses.

The row keeps the validated document as JSON plus ``name`` and ``priority`` columns. The
checks and the merge rules are the shared ones of ``store.policy_repo`` (the same contract
tests run against this class). middlewared's datastore has no multi-statement transaction
for a plugin, so the check-then-write of one process is serialised by a lock; middlewared is
the only writer of this table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..domain.errors import InvalidInput, NotFound
from ..domain.policy import Policy, policy_to_dict
from ..store.policy_repo import prepare_create, prepare_update, stored_policy, uniqueness_errors

TABLE = "vmware_coord.policy"

Call = Callable[..., Any]


def row_to_policy(row: Mapping[str, Any]) -> Policy:
    return stored_policy(row["id"], row["document"])


class DatastorePolicyRepository:
    def __init__(self, call: Call) -> None:
        self._call = call
        self._lock = threading.Lock()

    def list(self) -> list[Policy]:
        rows = self._call("datastore.query", TABLE, [], {"order_by": ["priority", "id"]})
        return [row_to_policy(r) for r in rows]

    def get(self, policy_id: int) -> Policy:
        if not isinstance(policy_id, int) or isinstance(policy_id, bool):
            raise NotFound("policy", policy_id)
        rows = self._call("datastore.query", TABLE, [["id", "=", policy_id]])
        if not rows:
            raise NotFound("policy", policy_id)
        return row_to_policy(rows[0])

    def get_by_name(self, name: str) -> Policy:
        for policy in self.list():
            if policy.name.casefold() == str(name).casefold():
                return policy
        raise NotFound("policy", name)

    def create(self, document: Mapping[str, Any]) -> Policy:
        policy = prepare_create(document)
        with self._lock:
            self._check_unique(policy)
            new_id = self._call("datastore.insert", TABLE, _row(policy))
        return replace(policy, id=new_id)

    def update(self, policy_id: int, changes: Mapping[str, Any]) -> Policy:
        with self._lock:
            policy = prepare_update(self.get(policy_id), changes)
            self._check_unique(policy)
            self._call("datastore.update", TABLE, policy_id, _row(policy))
        return policy

    def delete(self, policy_id: int) -> None:
        with self._lock:
            self.get(policy_id)
            self._call("datastore.delete", TABLE, policy_id)

    def _check_unique(self, policy: Policy) -> None:
        errors = uniqueness_errors(policy, self.list())
        if errors:
            raise InvalidInput(errors)


def _row(policy: Policy) -> dict[str, Any]:
    document = policy_to_dict(policy)
    document.pop("id", None)  # the row's id column is the only copy
    return {"name": policy.name, "priority": policy.priority, "document": document}
