"""Fixtures for the real components tests run against (tools/rig).

- ``start_vcsim(*flags)``: a govmomi simulator on 127.0.0.1, stopped by its pid when the
  test module ends; ``vcsim`` is a small strict one shared by a module.
- ``si``: a pyVmomi session against ``vcsim``, verifying its certificate.
- ``zfs_pool``: a zfs-fuse pool in a file for the whole session, exported and its daemon
  stopped by pid at the end, even when tests fail.

Nothing here skips: in CI a missing component is a failure, not a silent pass.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.rig import inventory, vcsim, zfs  # noqa: E402


@pytest.fixture(scope="module")
def start_vcsim() -> Iterator[Callable[..., vcsim.Simulator]]:
    started: list[vcsim.Simulator] = []

    def start(*flags: str, **kwargs: object) -> vcsim.Simulator:
        sim = vcsim.start(*flags, **kwargs)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def vcsim_sim(start_vcsim) -> vcsim.Simulator:
    return start_vcsim("-vm", "4", "-ds", "2", "-strict")


@pytest.fixture(scope="module")
def si(vcsim_sim):
    service = inventory.connect_to(vcsim_sim)
    yield service
    service.content.sessionManager.Logout()


@pytest.fixture(scope="session")
def zfs_pool() -> Iterator[zfs.ZfsPool]:
    workdir = Path(tempfile.mkdtemp(prefix="coord-zfs-"))
    # A name of its own: concurrent sessions on one machine share the zfs-fuse daemon.
    pool = zfs.start_pool(workdir, name=f"coordtest{os.getpid()}")
    try:
        yield pool
    finally:
        pool.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
