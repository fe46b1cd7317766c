"""The SQLite policy repository: the shared contract, plus what only a file can show."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy_repo_contract import PolicyRepositoryContract, doc
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.domain.policy import Policy
from truenas_vmware_coord.store.policy_repo import PolicyRepository, SqlitePolicyRepository


class TestSqliteInMemory(PolicyRepositoryContract):
    @pytest.fixture
    def repo(self) -> Iterator[PolicyRepository]:
        with SqlitePolicyRepository(":memory:") as repository:
            yield repository


class TestSqliteFile(PolicyRepositoryContract):
    @pytest.fixture
    def repo(self, tmp_path: Path) -> Iterator[PolicyRepository]:
        with SqlitePolicyRepository(tmp_path / "policies.sqlite") as repository:
            yield repository


def test_is_a_policy_repository() -> None:
    repo: PolicyRepository = SqlitePolicyRepository()  # type-checks against the Protocol
    repo.create(doc())
    assert len(repo.list()) == 1


def test_policies_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with SqlitePolicyRepository(path) as repo:
        created = repo.create(doc("db", 10, match={"name_glob": "db-*"}))
    with SqlitePolicyRepository(path) as repo:
        assert repo.list() == [created]


def test_uniqueness_holds_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with SqlitePolicyRepository(path) as first, SqlitePolicyRepository(path) as second:
        first.create(doc("db", 10))
        with pytest.raises(InvalidInput):
            second.create(doc("DB", 11))
        assert [p.name for p in second.list()] == ["db"]


class _NoPreCheck(SqlitePolicyRepository):
    """Stands for a writer that raced us between the check and the write: only the table's
    UNIQUE constraints are left to stop the duplicate."""

    def _check_unique(self, policy: Policy) -> None:
        return None


def test_unique_constraints_back_up_the_checks_and_nothing_is_half_written(tmp_path: Path) -> None:
    with _NoPreCheck(tmp_path / "p.sqlite") as repo:
        repo.create(doc("db", 10))
        with pytest.raises(InvalidInput) as caught:
            repo.create(doc("Db", 11))
        assert caught.value.errors[0].field == "policy"
        assert "conflicts with a stored policy" in caught.value.errors[0].message
        other = repo.create(doc("other", 20))
        with pytest.raises(InvalidInput):
            repo.update(other.id, {"priority": 10})
        assert [(p.name, p.priority) for p in repo.list()] == [("db", 10), ("other", 20)]


def test_document_is_stored_as_json_with_name_and_priority_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with SqlitePolicyRepository(path) as repo:
        repo.create(doc("db", 10))
    with sqlite3.connect(path) as raw:
        name, priority, document = raw.execute(
            "SELECT name, priority, document FROM vmware_coord_policy").fetchone()
    assert (name, priority) == ("db", 10)
    assert '"ladder": ["quiesce", "crash"]' in document and '"id"' not in document
