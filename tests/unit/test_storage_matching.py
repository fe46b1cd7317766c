"""Datastore <-> dataset matching: exact, by whole path components and normalised hosts."""

from __future__ import annotations

import posixpath

import pytest
from factories import nfs_datastore, storage, vmfs_datastore
from hypothesis import given
from hypothesis import strategies as st
from truenas_vmware_coord.domain.storage import (
    DatasetStorage,
    StorageFacts,
    dataset_for_file,
    dataset_for_path,
    index_storage,
    is_within,
    match_datastore,
    normalize_host,
    normalize_naa,
    normalize_path,
)

INDEX = index_storage(storage(("tank", "tank/vm", "tank/vm/child", "tank/vm2"),
                              extents={"tank/zvol1": ["0x6589CFC000000AA"],
                                       "tank/zvol2": ["naa.6589cfc000000bb"]}))


@pytest.mark.parametrize(("raw", "expected"), [
    ("/mnt/tank/vm", "/mnt/tank/vm"),
    ("/mnt/tank/vm/", "/mnt/tank/vm"),
    ("//mnt//tank///vm//", "/mnt/tank/vm"),
    ("mnt/tank/vm", "/mnt/tank/vm"),
    ("/mnt/./tank/x/../vm", "/mnt/tank/vm"),
    (" /mnt/tank/vm ", "/mnt/tank/vm"),
    ("/", "/"),
    ("", "/"),
])
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("NAS.Example.COM", "nas.example.com"),
    ("nas.example.com.", "nas.example.com"),
    ("[FD00:0:0::1]", "fd00::1"),
    ("fe80::1%vmk0", "fe80::1"),
    ("::ffff:10.0.0.1", "10.0.0.1"),
    (" 10.0.0.1 ", "10.0.0.1"),
])
def test_normalize_host(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected


def test_normalize_naa_accepts_vmware_and_truenas_spellings() -> None:
    assert normalize_naa("naa.6589CFC0") == normalize_naa("0x6589cfc0") == "6589cfc0"


def test_sibling_with_common_prefix_is_not_within() -> None:
    assert not is_within("/mnt/tank/vm2", "/mnt/tank/vm")
    assert not is_within("/mnt/tank/vm2/a", "/mnt/tank/vm/")
    assert is_within("/mnt/tank/vm/", "/mnt/tank/vm")
    assert is_within("/mnt/tank/vm/a/b", "/mnt/tank/vm")


def test_deepest_mountpoint_wins_and_siblings_stay_apart() -> None:
    assert dataset_for_path(INDEX, "/mnt/tank/vm") == "tank/vm"
    assert dataset_for_path(INDEX, "/mnt/tank/vm/some/dir") == "tank/vm"
    assert dataset_for_path(INDEX, "/mnt/tank/vm/child/") == "tank/vm/child"
    assert dataset_for_path(INDEX, "/mnt/tank/vm2") == "tank/vm2"
    assert dataset_for_path(INDEX, "/mnt/tank/vm22") == "tank"
    assert dataset_for_path(INDEX, "/srv/other") is None


def test_unmounted_datasets_are_never_matched() -> None:
    facts = StorageFacts(("10.0.0.1",), (DatasetStorage("tank/a", "legacy"),
                                         DatasetStorage("tank/b", None),
                                         DatasetStorage("tank/c", "none")))
    assert index_storage(facts).by_mountpoint == {}


@pytest.mark.parametrize("host", ["10.0.0.1", "NAS.example.com", "nas", "[fd00::1]",
                                  "fd00:0::1"])
def test_nfs_matches_any_address_or_host_name(host: str) -> None:
    m = match_datastore(nfs_datastore(hosts=(host,), path="/mnt/tank/vm/"), INDEX)
    assert (m.via, m.datasets, m.export_path) == ("nfs", ("tank/vm",), "/mnt/tank/vm")


def test_nfs_matches_when_any_of_several_remote_hosts_is_ours() -> None:
    m = match_datastore(nfs_datastore(hosts=("10.9.9.9", "nas.example.com")), INDEX)
    assert m.datasets == ("tank/vm",)


def test_nfs_subdirectory_of_a_dataset_belongs_to_it() -> None:
    m = match_datastore(nfs_datastore(path="/mnt/tank/vm/esx-cluster-a"), INDEX)
    assert m.datasets == ("tank/vm",)
    assert m.export_path == "/mnt/tank/vm/esx-cluster-a"


def test_nfs_export_of_a_child_belongs_to_the_child() -> None:
    assert match_datastore(nfs_datastore(path="/mnt/tank/vm/child"), INDEX).datasets == (
        "tank/vm/child",)


def test_nfs_from_another_server_is_not_matched_and_says_why() -> None:
    m = match_datastore(nfs_datastore(hosts=("10.0.0.99",)), INDEX)
    assert m.datasets == ()
    assert "not an address of this NAS" in m.detail


def test_nfs_path_outside_every_mountpoint_is_not_matched() -> None:
    m = match_datastore(nfs_datastore(path="/srv/nfs"), INDEX)
    assert m.datasets == ()
    assert "under no dataset mountpoint" in m.detail


def test_vmfs_matches_zvol_by_naa_case_and_prefix_insensitively() -> None:
    m = match_datastore(vmfs_datastore(extents=("naa.6589cfc000000aa",)), INDEX)
    assert (m.via, m.datasets, m.foreign_extents) == ("vmfs", ("tank/zvol1",), ())


def test_vmfs_spanning_zvols_and_foreign_luns_reports_both() -> None:
    m = match_datastore(
        vmfs_datastore(extents=("naa.6589cfc000000bb", "naa.6589cfc000000aa", "naa.600a0b80")),
        INDEX,
    )
    assert m.datasets == ("tank/zvol1", "tank/zvol2")
    assert m.foreign_extents == ("naa.600a0b80",)
    assert "not exported by this NAS" in m.detail


def test_other_datastore_types_are_not_matched() -> None:
    ds = nfs_datastore()
    vsan = type(ds)(endpoint_id=ds.endpoint_id, moref="datastore-9", name="vsan", type="vsan")
    assert match_datastore(vsan, INDEX).datasets == ()


def test_file_on_parent_export_inside_a_child_dataset_belongs_to_the_child() -> None:
    m = match_datastore(nfs_datastore(path="/mnt/tank/vm"), INDEX)
    assert dataset_for_file(m, INDEX, "child/db/db.vmdk") == ("tank/vm/child",)
    assert dataset_for_file(m, INDEX, "web/web.vmdk") == ("tank/vm",)
    assert dataset_for_file(m, INDEX, "childish/x.vmdk") == ("tank/vm",)


# ------------------------------------------------------------------ properties

segment = st.text(alphabet="abcdefgh0123456789-_.", min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))
segments = st.lists(segment, min_size=1, max_size=5)


def _noisy(parts: list[str], slashes: list[int], trailing: bool) -> str:
    out = ""
    for p, n in zip(parts, slashes, strict=False):
        out += "/" * n + p
    return out + ("/" if trailing else "")


@given(segments, st.lists(st.integers(1, 3), min_size=5, max_size=5), st.booleans())
def test_normalize_path_is_idempotent_and_ignores_slash_noise(
    parts: list[str], slashes: list[int], trailing: bool
) -> None:
    noisy = _noisy(parts, slashes, trailing)
    clean = "/" + "/".join(parts)
    assert normalize_path(noisy) == clean
    assert normalize_path(normalize_path(noisy)) == normalize_path(noisy)


@given(segments, segments)
def test_is_within_is_exactly_a_component_prefix(a: list[str], b: list[str]) -> None:
    assert is_within("/" + "/".join(a), "/" + "/".join(b)) == (a[: len(b)] == b)


@given(st.lists(segments, min_size=1, max_size=8), segments)
def test_dataset_for_path_is_the_deepest_containing_mountpoint(
    mounts: list[list[str]], path: list[str]
) -> None:
    facts = StorageFacts(
        ("10.0.0.1",),
        tuple(DatasetStorage(f"pool/d{i}", "/" + "/".join(m)) for i, m in enumerate(mounts)),
    )
    index = index_storage(facts)
    p = "/" + "/".join(path)
    containing = [m for m in index.by_mountpoint if is_within(p, m)]
    expected = index.by_mountpoint[max(containing, key=len)] if containing else None
    assert dataset_for_path(index, p) == expected
    # The same answer whatever spelling the path arrives in.
    assert dataset_for_path(index, posixpath.join("//", *path) + "//") == expected


@given(st.permutations(["tank", "tank/vm", "tank/vm/child", "tank/vm2", "tank/zvol1"]))
def test_index_does_not_depend_on_fact_order(names: list[str]) -> None:
    facts = StorageFacts(("10.0.0.1",), tuple(
        DatasetStorage(n, f"/mnt/{n}" if "zvol" not in n else None,
                       ("naa.1",) if "zvol" in n else ()) for n in names))
    assert index_storage(facts) == INDEX_SUBSET


INDEX_SUBSET = index_storage(StorageFacts(("10.0.0.1",), (
    DatasetStorage("tank", "/mnt/tank"), DatasetStorage("tank/vm", "/mnt/tank/vm"),
    DatasetStorage("tank/vm/child", "/mnt/tank/vm/child"),
    DatasetStorage("tank/vm2", "/mnt/tank/vm2"), DatasetStorage("tank/zvol1", None, ("naa.1",)),
)))
