"""Fixtures the restore tests share: the in-memory doubles of fake_restore.py."""

from __future__ import annotations

import pytest
from fake_restore import FakeRestoreHypervisor, FakeZfsHost


@pytest.fixture
def hv() -> FakeRestoreHypervisor:
    return FakeRestoreHypervisor()


@pytest.fixture
def zfs() -> FakeZfsHost:
    return FakeZfsHost()
