"""Where policies are kept: a repository interface and its SQLite implementation.

The interface follows TrueNAS's CRUD conventions: the store assigns ids; ``update`` takes a
partial document that is merged onto the stored one at the top level (a nested object such as
``match`` or ``options`` is replaced as a whole) and the result is validated as a whole;
``list`` is ordered by priority (lowest number first: the evaluation order). Names are unique
ignoring case, priorities are unique. A rejected write raises ``InvalidInput`` and changes
nothing; an unknown id raises ``NotFound``.

The SQLite implementation is what the CLI uses in standalone mode. The middlewared-datastore
implementation must pass the same contract tests (tests/unit/policy_repo_contract.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from truenas_vmware_coord.domain.errors import FieldError, InvalidInput, NotFound, StateError
from truenas_vmware_coord.domain.policy import Policy, parse_policy, policy_to_dict

from . import sqlite

FIELD = "policy"
MAX_ID = 2**63 - 1   # SQLite's largest integer


class PolicyStoreError(StateError):
    """The policy store cannot be read or written, or holds a policy that no longer
    validates: the policies are then unknown, so nothing is decided from them."""


def stored_policy(policy_id: int, document: Any) -> Policy:
    """A stored document as a Policy; one that no longer validates (a newer, stricter
    release) is a PolicyStoreError naming it, never silently skipped."""
    try:
        return replace(parse_policy(document), id=policy_id)
    except InvalidInput as exc:
        name = document.get("name") if isinstance(document, Mapping) else None
        raise PolicyStoreError(f"stored policy {policy_id} ({name!r}) is no longer valid: {exc}; "
                               f"correct it with 'policy update {policy_id}' or delete it") from None


class PolicyRepository(Protocol):
    def list(self) -> list[Policy]:
        """Every policy, enabled or not, lowest priority number first."""
        ...

    def get(self, policy_id: int) -> Policy: ...

    def get_by_name(self, name: str) -> Policy:
        """The policy with this name, ignoring case."""
        ...

    def create(self, document: Mapping[str, Any]) -> Policy:
        """Validate and store a new policy; the returned policy carries its new id."""
        ...

    def update(self, policy_id: int, changes: Mapping[str, Any]) -> Policy: ...

    def delete(self, policy_id: int) -> None: ...


def prepare_create(document: Any) -> Policy:
    """Validate a create request (shared by every implementation, so they reject alike)."""
    if isinstance(document, Mapping) and document.get("id") is not None:
        raise InvalidInput.single(f"{FIELD}.id", "is assigned by the store; leave it out")
    return parse_policy(document, field=FIELD)


def prepare_update(existing: Policy, changes: Any) -> Policy:
    """Merge a partial update onto ``existing`` and validate the result as a whole."""
    if not isinstance(changes, Mapping):
        raise InvalidInput.single(FIELD, "must be an object with the fields to change")
    if changes.get("id", existing.id) != existing.id:
        raise InvalidInput.single(f"{FIELD}.id", "cannot be changed")
    merged = {**policy_to_dict(existing), **changes, "id": existing.id}
    return parse_policy(merged, field=FIELD)


def uniqueness_errors(candidate: Policy, others: list[Policy]) -> list[FieldError]:
    """Name and priority clashes of ``candidate`` with the other stored policies."""
    errors = []
    for other in others:
        if other.id == candidate.id:
            continue
        if other.name.casefold() == candidate.name.casefold():
            errors.append(FieldError(f"{FIELD}.name", f"a policy named '{other.name}' already exists"))
        if other.priority == candidate.priority:
            errors.append(FieldError(
                f"{FIELD}.priority",
                f"priority {candidate.priority} is already used by policy '{other.name}'",
            ))
    return errors


def with_draft(repo: PolicyRepository, document: Mapping[str, Any], policy_id: int | None) -> list[Policy]:
    """The stored policies as they would be if ``document`` were saved (new, or as an update of
    ``policy_id``), validated exactly as a save would be, but nothing is written."""
    stored = repo.list()
    candidate = prepare_update(repo.get(policy_id), document) if policy_id is not None \
        else prepare_create(document)
    errors = uniqueness_errors(candidate, stored)
    if errors:
        raise InvalidInput(errors)
    return [p for p in stored if policy_id is None or p.id != policy_id] + [candidate]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS vmware_coord_policy (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    priority INTEGER NOT NULL UNIQUE,
    document TEXT NOT NULL
)
"""


class SqlitePolicyRepository:
    """Policies in one SQLite table: the validated document as JSON, plus the columns that
    carry the uniqueness constraints (the constraints back up the checks made in the same
    transaction, so a concurrent writer can never slip a duplicate in)."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, readonly: bool = False) -> None:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so every write takes the
        # write lock before it reads what it checks.
        self.path = Path(os.fspath(path))
        try:
            if readonly and str(path) != ":memory:":
                if not self.path.is_file():
                    self._conn = sqlite3.connect(":memory:", isolation_level=None)   # none stored yet
                else:
                    self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                 isolation_level=None, timeout=30)
                    self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    return
            elif str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=30)
            else:
                self._conn = sqlite3.connect(":memory:", isolation_level=None)
            self._conn.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> PolicyStoreError:
        return PolicyStoreError("policy store " + sqlite.explain(
            self.path, exc, corrupt_fix="restore it from a backup, or move it aside to start with no "
                                        "policies (until then no snapshot is coordinated)"))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqlitePolicyRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads --

    def _query(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[int, str]]:
        try:
            return self._conn.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []   # a read-only open of a store that has none yet
            raise self._failure(exc) from None
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def list(self) -> list[Policy]:
        rows = self._query("SELECT id, document FROM vmware_coord_policy ORDER BY priority, id")
        return [_from_row(row) for row in rows]

    def get(self, policy_id: int) -> Policy:
        return self._one("id", _as_id(policy_id), policy_id)

    def get_by_name(self, name: str) -> Policy:
        return self._one("name", str(name), name)

    def _one(self, column: str, value: Any, asked: Any) -> Policy:
        query = {"id": "SELECT id, document FROM vmware_coord_policy WHERE id = ?",
                 "name": "SELECT id, document FROM vmware_coord_policy WHERE name = ?"}[column]
        rows = self._query(query, (value,))
        if not rows:
            raise NotFound("policy", asked)
        return _from_row(rows[0])

    # -- writes --

    def create(self, document: Mapping[str, Any]) -> Policy:
        policy = prepare_create(document)
        with self._transaction():
            self._check_unique(policy)
            cursor = self._conn.execute(
                "INSERT INTO vmware_coord_policy (name, priority, document) VALUES (?, ?, ?)",
                (policy.name, policy.priority, _document(policy)),
            )
            return replace(policy, id=cursor.lastrowid)

    def update(self, policy_id: int, changes: Mapping[str, Any]) -> Policy:
        with self._transaction():
            policy = prepare_update(self.get(policy_id), changes)
            self._check_unique(policy)
            self._conn.execute(
                "UPDATE vmware_coord_policy SET name = ?, priority = ?, document = ? WHERE id = ?",
                (policy.name, policy.priority, _document(policy), policy.id),
            )
            return policy

    def delete(self, policy_id: int) -> None:
        with self._transaction():
            cursor = self._conn.execute(
                "DELETE FROM vmware_coord_policy WHERE id = ?", (_as_id(policy_id),)
            )
            if cursor.rowcount == 0:
                raise NotFound("policy", policy_id)

    def _check_unique(self, policy: Policy) -> None:
        errors = uniqueness_errors(policy, self.list())
        if errors:
            raise InvalidInput(errors)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        try:
            yield
            self._conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            # Only reachable if another process wrote between our check and our write.
            self._conn.execute("ROLLBACK")
            raise InvalidInput.single(FIELD, f"conflicts with a stored policy ({exc})") from None
        except sqlite3.Error as exc:
            self._rollback()
            raise self._failure(exc) from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with suppress(sqlite3.Error):   # no transaction left to roll back (SQLite ended it)
            self._conn.execute("ROLLBACK")


def _as_id(policy_id: Any) -> int:
    # A non-integer (or too large) id cannot exist; -1 matches no row: the caller gets NotFound.
    valid = isinstance(policy_id, int) and not isinstance(policy_id, bool) and 0 <= policy_id <= MAX_ID
    return policy_id if valid else -1


def _document(policy: Policy) -> str:
    data = policy_to_dict(policy)
    data.pop("id", None)  # the row's id column is the only copy
    return json.dumps(data, sort_keys=True)


def _from_row(row: tuple[int, str]) -> Policy:
    return stored_policy(row[0], json.loads(row[1]))
