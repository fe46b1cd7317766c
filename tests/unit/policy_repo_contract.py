"""The behaviour every policy repository must have, as a reusable test base class.

Use it for each implementation (SQLite now, the middlewared datastore later)::

    class TestMyRepository(PolicyRepositoryContract):
        @pytest.fixture
        def repo(self):
            repository = MyRepository(...)
            yield repository
            ...cleanup...

Every test gets a fresh, empty repository from that fixture.
"""

from __future__ import annotations

from typing import Any

import pytest
from truenas_vmware_coord.domain.errors import InvalidInput, NotFound
from truenas_vmware_coord.domain.policy import parse_policy, policy_to_dict
from truenas_vmware_coord.store.policy_repo import PolicyRepository


def doc(name: str = "db", priority: int = 10, **rest: Any) -> dict[str, Any]:
    return {"name": name, "priority": priority, "ladder": ["quiesce", "crash"], **rest}


class PolicyRepositoryContract:
    @pytest.fixture
    def repo(self) -> PolicyRepository:
        raise NotImplementedError("a subclass provides the repository under test")

    # -- helpers --

    @staticmethod
    def rejected(action: Any) -> list[tuple[str, str]]:
        with pytest.raises(InvalidInput) as caught:
            action()
        return [tuple(e) for e in caught.value.errors]

    # -- reads --

    def test_starts_empty(self, repo: PolicyRepository) -> None:
        assert repo.list() == []

    def test_create_assigns_distinct_ids_and_get_returns_the_policy(self, repo: PolicyRepository) -> None:
        a = repo.create(doc("a", 1))
        b = repo.create(doc("b", 2))
        assert isinstance(a.id, int) and isinstance(b.id, int) and a.id != b.id
        assert repo.get(a.id) == a and repo.get(b.id) == b

    def test_stored_policy_round_trips_the_document(self, repo: PolicyRepository) -> None:
        document = doc(description="x", scope={"endpoint_id": "u@h:443"}, enabled=False,
                       match={"name_glob": "db-*", "has_blocker": ["no_tools"]},
                       options={"quiesce_timeout_minutes": 10}, requires="crash")
        created = repo.create(document)
        expected = policy_to_dict(parse_policy(document)) | {"id": created.id}
        assert policy_to_dict(repo.get(created.id)) == expected

    def test_list_is_ordered_by_priority_and_includes_disabled(self, repo: PolicyRepository) -> None:
        repo.create(doc("late", 300))
        repo.create(doc("early", 5, enabled=False))
        repo.create(doc("middle", 40))
        assert [p.name for p in repo.list()] == ["early", "middle", "late"]

    def test_get_by_name_ignores_case(self, repo: PolicyRepository) -> None:
        created = repo.create(doc("GPU-hosts", 1))
        assert repo.get_by_name("gpu-HOSTS") == created

    @pytest.mark.parametrize("key", [999_999, -1, "1", None])
    def test_unknown_id_is_not_found(self, repo: PolicyRepository, key: Any) -> None:
        repo.create(doc())
        with pytest.raises(NotFound):
            repo.get(key)
        with pytest.raises(NotFound):
            repo.update(key, {"enabled": False})
        with pytest.raises(NotFound):
            repo.delete(key)

    def test_unknown_name_is_not_found(self, repo: PolicyRepository) -> None:
        with pytest.raises(NotFound):
            repo.get_by_name("nope")

    # -- create --

    def test_invalid_create_is_rejected_and_stores_nothing(self, repo: PolicyRepository) -> None:
        errors = self.rejected(lambda: repo.create(doc(ladder=["exclude", "crash"], colour="red")))
        assert ("policy.colour", "unknown field 'colour'") in errors
        assert repo.list() == []

    def test_semantic_error_on_create_stores_nothing(self, repo: PolicyRepository) -> None:
        errors = self.rejected(lambda: repo.create(doc(match={"name_regex": "("})))
        assert [f for f, _ in errors] == ["policy.match.name_regex"]
        assert repo.list() == []

    def test_create_refuses_a_caller_chosen_id(self, repo: PolicyRepository) -> None:
        assert self.rejected(lambda: repo.create(doc(id=7))) == [
            ("policy.id", "is assigned by the store; leave it out")
        ]
        assert repo.list() == []

    def test_duplicate_name_ignoring_case_and_duplicate_priority(self, repo: PolicyRepository) -> None:
        repo.create(doc("db", 10))
        assert self.rejected(lambda: repo.create(doc("DB", 11))) == [
            ("policy.name", "a policy named 'db' already exists")
        ]
        assert self.rejected(lambda: repo.create(doc("other", 10))) == [
            ("policy.priority", "priority 10 is already used by policy 'db'")
        ]
        assert len(self.rejected(lambda: repo.create(doc("Db", 10)))) == 2
        assert [p.name for p in repo.list()] == ["db"]

    # -- update --

    def test_update_merges_a_partial_document(self, repo: PolicyRepository) -> None:
        created = repo.create(doc(description="keep me", match={"name_glob": "db-*"}))
        updated = repo.update(created.id, {"enabled": False, "priority": 99})
        assert (updated.enabled, updated.priority, updated.description) == (False, 99, "keep me")
        assert updated.match.name_glob == "db-*" and updated.id == created.id
        assert repo.get(created.id) == updated

    def test_update_replaces_nested_objects_whole(self, repo: PolicyRepository) -> None:
        created = repo.create(doc(options={"quiesce_timeout_minutes": 30, "hard_power_off": True}))
        updated = repo.update(created.id, {"options": {"hard_power_off": False}})
        assert updated.ladder.options.quiesce_timeout_minutes is None

    def test_update_keeping_its_own_name_and_priority_is_no_conflict(self, repo: PolicyRepository) -> None:
        created = repo.create(doc("db", 10))
        assert repo.update(created.id, {"name": "DB", "priority": 10, "id": created.id}).name == "DB"

    def test_update_validates_the_merged_whole_and_changes_nothing_on_error(
        self, repo: PolicyRepository
    ) -> None:
        created = repo.create(doc(ladder=["quiesce", "crash"], requires="quiesced"))
        errors = self.rejected(lambda: repo.update(created.id, {"ladder": ["exclude", "quiesce"]}))
        assert [f for f, _ in errors] == ["policy.ladder"]
        # Valid on its own, invalid merged: the stored "requires" cannot be met by memory.
        assert self.rejected(lambda: repo.update(created.id, {"ladder": ["memory", "crash"]})) == [
            ("policy.requires", "'quiesced' cannot be reached: the best strategy listed, 'memory', "
                                "gives 'memory'")
        ]
        assert self.rejected(lambda: repo.update(created.id, {"nmae": "x"})) == [
            ("policy.nmae", "unknown field 'nmae'")
        ]
        assert repo.get(created.id) == created

    def test_update_into_another_policys_name_or_priority_is_rejected(self, repo: PolicyRepository) -> None:
        a = repo.create(doc("a", 1))
        b = repo.create(doc("b", 2))
        assert self.rejected(lambda: repo.update(b.id, {"name": "A"})) == [
            ("policy.name", "a policy named 'a' already exists")
        ]
        assert self.rejected(lambda: repo.update(b.id, {"priority": 1})) == [
            ("policy.priority", "priority 1 is already used by policy 'a'")
        ]
        assert repo.list() == [a, b]

    def test_update_cannot_change_the_id(self, repo: PolicyRepository) -> None:
        created = repo.create(doc())
        assert self.rejected(lambda: repo.update(created.id, {"id": created.id + 1})) == [
            ("policy.id", "cannot be changed")
        ]

    @pytest.mark.parametrize("changes", [None, [], "enabled"])
    def test_update_needs_an_object(self, repo: PolicyRepository, changes: Any) -> None:
        created = repo.create(doc())
        assert self.rejected(lambda: repo.update(created.id, changes)) == [
            ("policy", "must be an object with the fields to change")
        ]

    def test_priorities_can_be_swapped_through_a_free_number(self, repo: PolicyRepository) -> None:
        a = repo.create(doc("a", 1))
        b = repo.create(doc("b", 2))
        repo.update(a.id, {"priority": 3})
        repo.update(b.id, {"priority": 1})
        repo.update(a.id, {"priority": 2})
        assert [p.name for p in repo.list()] == ["b", "a"]

    # -- delete --

    def test_delete_removes_and_frees_name_and_priority(self, repo: PolicyRepository) -> None:
        created = repo.create(doc("db", 10))
        kept = repo.create(doc("other", 20))
        repo.delete(created.id)
        assert repo.list() == [kept]
        with pytest.raises(NotFound):
            repo.get(created.id)
        with pytest.raises(NotFound):
            repo.delete(created.id)
        again = repo.create(doc("db", 10))
        assert again.id != created.id
