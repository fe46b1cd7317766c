"""Fixtures shared by the integration tests that build their own scenarios."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyVmomi import vim

from tools.rig import inventory, iscsi, vcsim


@pytest.fixture(scope="module")
def sim(start_vcsim):
    """An empty strict simulator per test module; each test adds its own datastore and VMs."""
    return start_vcsim("-vm", "0", "-strict")


@pytest.fixture(scope="module")
def module_si(sim):
    si = inventory.connect_to(sim)
    yield si
    si.content.sessionManager.Logout()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> iscsi.IscsiTarget:
    """The rig's iSCSI target (tools/rig/iscsi.py) the module's ``vmfs_sim`` hosts are logged in to."""
    return iscsi.IscsiTarget(tmp_path_factory.mktemp("iscsi-target"))


@pytest.fixture(scope="module")
def vmfs_sim(start_vcsim, target: iscsi.IscsiTarget) -> vcsim.Simulator:
    """A strict simulator whose hosts discover ``target``'s LUNs (tools/vcsim/coord_vmfs.go)."""
    return start_vcsim(*target.flags(), "-vm", "0", "-strict")


@pytest.fixture(scope="module")
def vmfs_si(vmfs_sim: vcsim.Simulator) -> Iterator[vim.ServiceInstance]:
    si = inventory.connect_to(vmfs_sim)
    yield si
    si.content.sessionManager.Logout()
