"""The ``LunExport`` adapter over TrueNAS's iSCSI extent API, against its double
(tests/middleware_double/iscsi.py, written from TS-25.10.6): a clone's extent mapped into
every target of the original, the device waited for, a failed mapping leaving no extent,
the forced delete the hosts' sessions need, and what ``check`` refuses."""

from __future__ import annotations

from typing import Any

import pytest
from truenas_vmware_coord.domain.errors import InvalidInput
from truenas_vmware_coord.truenas.iscsi import COMMENT, TrueNasLuns

from tests.middleware_double.framework import CallError, ValidationErrors
from tests.middleware_double.iscsi import Iscsi

ZVOL, CLONE = "tank/lun0", "tank/lun0-restore-abcd1234"


class Nas:
    """The double's methods under their API names, as ``middleware.call`` reaches them."""

    def __init__(self) -> None:
        self.zvols = {ZVOL}
        self.published: list[list[dict[str, Any]]] = []
        self.iscsi = Iscsi(lambda: self.zvols, self.published.append)
        self.iscsi.targets.append({"id": 2, "name": "backup"})
        original = self.iscsi.extent_create({"name": "lun0", "disk": f"zvol/{ZVOL}"})
        self.iscsi.mapping_create({"target": 1, "extent": original["id"]})
        self.original = original
        self.calls: list[str] = []

    def call(self, method: str, *args: Any) -> Any:
        self.calls.append(method)
        i = self.iscsi
        return {"iscsi.extent.query": i.extent_query, "iscsi.extent.create": i.extent_create,
                "iscsi.extent.delete": i.extent_delete, "iscsi.targetextent.query": i.mapping_query,
                "iscsi.targetextent.create": i.mapping_create,
                "service.query": lambda f, o: {"state": i.state}}[method](*args)


@pytest.fixture
def nas() -> Nas:
    return Nas()


def test_a_clone_becomes_a_writable_extent_mapped_at_the_next_free_lun_of_the_originals_targets(nas):
    nas.zvols.add(CLONE)
    luns = TrueNasLuns(nas.call)
    assert luns.naa_of(ZVOL) == (nas.original["naa"][2:],)
    lun = luns.expose(CLONE, ZVOL)
    [extent] = [e for e in nas.iscsi.extents if e["path"] == f"zvol/{CLONE}"]
    assert lun.ref == str(extent["id"]) and lun.naa == extent["naa"][2:] and len(lun.naa) == 32
    assert extent["ro"] is False and extent["comment"] == COMMENT.format(clone=CLONE)
    assert [(m["target"], m["lunid"]) for m in nas.iscsi.mappings if m["extent"] == extent["id"]] == [(1, 1)]
    assert nas.published[-1][-1]["naa"] == extent["naa"]   # the target service served it
    luns.unexpose(lun.ref)
    assert [e["path"] for e in nas.iscsi.extents] == [f"zvol/{ZVOL}"] and len(nas.iscsi.mappings) == 1
    luns.unexpose(lun.ref)   # gone already: not an error


def test_an_extent_whose_create_answer_was_lost_is_found_by_its_comment(nas):
    nas.zvols.add(CLONE)
    TrueNasLuns(nas.call).expose(CLONE, ZVOL)
    TrueNasLuns(nas.call).unexpose(CLONE)
    assert [e["path"] for e in nas.iscsi.extents] == [f"zvol/{ZVOL}"]


def test_the_delete_is_forced_because_the_hosts_hold_sessions_to_the_target(nas):
    nas.zvols.add(CLONE)
    lun = TrueNasLuns(nas.call).expose(CLONE, ZVOL)
    with pytest.raises(CallError, match="Associated target.* vmware is in use"):
        nas.iscsi.extent_delete(int(lun.ref))   # what TrueNAS answers an unforced delete
    TrueNasLuns(nas.call).unexpose(lun.ref)
    assert len(nas.iscsi.extents) == 1


def test_a_create_refused_for_the_clones_missing_device_is_tried_again_until_a_timeout(nas):
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 2.0:
            nas.zvols.add(CLONE)   # udev made the device

    luns = TrueNasLuns(nas.call, clock=lambda: now[0], sleep=sleep)
    assert luns.expose(CLONE, ZVOL).naa and now[0] == 2.0
    assert nas.calls.count("iscsi.extent.create") == 5
    with pytest.raises(TimeoutError, match="/dev/zvol/tank/other did not appear within 30 s"):
        luns.expose("tank/other", ZVOL)
    nas.calls.clear()
    with pytest.raises(ValidationErrors, match='must start with "zvol/"|in use by extent'):
        luns.expose(ZVOL, ZVOL)   # any other refusal is final: one call
    assert nas.calls.count("iscsi.extent.create") == 1


def test_a_mapping_that_fails_leaves_no_extent(nas):
    nas.zvols.add(CLONE)
    nas.iscsi.targets.clear()   # the original's target gone between the query and the mapping
    with pytest.raises(ValidationErrors, match="Target not found"):
        TrueNasLuns(nas.call).expose(CLONE, ZVOL)
    assert [e["path"] for e in nas.iscsi.extents] == [f"zvol/{ZVOL}"]


def test_check_refuses_a_zvol_no_target_maps_and_a_stopped_service(nas):
    luns = TrueNasLuns(nas.call)
    luns.check("snapshot", ZVOL)
    with pytest.raises(InvalidInput) as caught:
        luns.check("snapshot", "tank/unmapped")
    assert caught.value.errors[0].field == "snapshot"
    assert "no iSCSI target of this NAS maps an extent of tank/unmapped" in caught.value.errors[0].message
    nas.iscsi.state = "STOPPED"
    with pytest.raises(InvalidInput, match=r"the iSCSI service is stopped: .*System > Services > iSCSI"):
        luns.check("snapshot", ZVOL)
