"""Fixtures shared by the integration tests that build their own scenarios."""

from __future__ import annotations

import pytest

from tools.rig import inventory


@pytest.fixture(scope="module")
def sim(start_vcsim):
    """An empty strict simulator per test module; each test adds its own datastore and VMs."""
    return start_vcsim("-vm", "0", "-strict")


@pytest.fixture(scope="module")
def module_si(sim):
    si = inventory.connect_to(sim)
    yield si
    si.content.sessionManager.Logout()
