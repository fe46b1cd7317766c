"""``vmware-coord doctor``: what is wrong with the configuration or the state directory,
and how to repair it. It only reads: nothing is moved, created or changed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any

from ..domain.errors import InvalidInput, StateError
from ..engine.journal import Journal
from ..engine.ports import HypervisorFailure
from ..store.policy_repo import SqlitePolicyRepository
from ..vsphere.hypervisor import VsphereConnector
from ..zfs import snapshot as zfs_snapshot
from ..zfs.shell import LocalShell, ShellError
from .config import CliConfig

MIN_FREE_BYTES = 16 << 20


@dataclasses.dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def examine(config: CliConfig, connect: bool = False) -> list[Finding]:
    findings = [*_state_dir(config), *_journal(config), _policies(config), *_passwords(config),
                *_datasets(config)]
    if connect:
        findings += _endpoints(config)
    return findings


def _state_dir(config: CliConfig) -> list[Finding]:
    where = config.state_dir
    if not where.is_dir():
        return [Finding("state directory", False, f"{where} does not exist",
                        f"it is created by the first run; or create it: mkdir -p {where}")]
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [Finding("state directory", False, f"{where} cannot be written: {exc.strerror}",
                        f"make {where} writable by this user (runs would not be coordinated)")]
    free = shutil.disk_usage(where).free
    if free < MIN_FREE_BYTES:
        return [Finding("state directory", False, f"{where}: only {free // 1024} KiB free",
                        "free some space on that file system (runs need to journal)")]
    return [Finding("state directory", True, f"{where}: writable, {free // (1 << 20)} MiB free")]


def _journal(config: CliConfig) -> list[Finding]:
    path = config.journal_path
    aside = sorted(p.name for p in path.parent.glob(f"{path.name}.corrupt-*")
                   if not p.name.endswith(("-wal", "-shm")))
    found = []
    if aside:
        found.append(Finding("moved-aside journals", False, f"{', '.join(aside)} in {path.parent}: runs "
                             "recorded only there are not finished by reconcile",
                             "run 'vmware-coord reconcile' (it removes their marked VMware snapshots once "
                             "older than the marker age); check that every VM is running; then delete them"))
    if not path.exists():
        return [*found, Finding("journal", True, f"{path} does not exist yet (no run made)")]
    try:
        journal = Journal(path, readonly=True)
    except StateError as exc:
        return [*found, Finding("journal", False, str(exc), "run 'vmware-coord reconcile': it moves a "
                                                          "corrupted journal aside and starts a new one")]
    try:
        begun = journal.begun_runs()
        open_actions = journal.actions(open_only=True)
    finally:
        journal.close()
    size = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    found.append(Finding("journal", True, f"{path}: {size // 1024} KiB"))
    now = time.time()
    if open_actions:
        items = ", ".join(f"{a.vm_name} ({a.kind.value} {a.state.value})" for a in open_actions[:10])
        found.append(Finding("unfinished work", False, f"{len(open_actions)} open action(s): {items}",
                             "run 'vmware-coord reconcile' (cron every 15 minutes does it)"))
    stale = [r for r in begun if now - r.started_at > 3600]
    if stale:
        ages = ", ".join(f"{r.run_id} ({r.dataset}, {(now - r.started_at) / 3600:.1f} h)" for r in stale)
        found.append(Finding("stuck runs", False, ages, "run 'vmware-coord reconcile'"))
    return found


def _policies(config: CliConfig) -> Finding:
    try:
        with SqlitePolicyRepository(config.policy_db, readonly=True) as repo:
            count = len(repo.list())
    except StateError as exc:
        return Finding("policy store", False, str(exc),
                       "restore it from a backup, or move it aside (the policies in it are then gone)")
    return Finding("policy store", True, f"{config.policy_db}: {count} policies")


def _passwords(config: CliConfig) -> list[Finding]:
    found = []
    for name, endpoint_id in sorted(config.endpoint_names.items()):
        try:
            config.password_for(endpoint_id)
            found.append(Finding(f"password of {name}", True, "available"))
        except InvalidInput as exc:
            found.append(Finding(f"password of {name}", False, str(exc), "set the variable or fix the file"))
    return found


def _datasets(config: CliConfig) -> list[Finding]:
    shell = LocalShell(timeout=30)
    found = []
    for mapping in config.mappings:
        try:
            exists = zfs_snapshot.dataset_tree(shell, mapping.dataset) is not None
        except (ShellError, OSError) as exc:
            return [Finding("zfs", False, f"'zfs list' failed: {exc}",
                            "check that ZFS is installed and running")]
        if not exists:
            found.append(Finding(f"mapping {mapping.id}", False, f"dataset {mapping.dataset} does not exist",
                                 "correct the mapping's dataset"))
    return found or [Finding("mappings", True, f"{len(config.mappings)} mapping(s), datasets present")]


def _endpoints(config: CliConfig) -> list[Finding]:
    connector = VsphereConnector(config.endpoints, config.password_for)
    found = []
    for name, endpoint_id in sorted(config.endpoint_names.items()):
        try:
            connector.open(endpoint_id).close()
            found.append(Finding(f"endpoint {name}", True, "logged in"))
        except (HypervisorFailure, InvalidInput) as exc:
            found.append(Finding(f"endpoint {name}", False, str(exc),
                                 "check the host, the account and the certificate pin"))
    return found


def render(findings: list[dict[str, Any]]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok     ' if f['ok'] else 'PROBLEM'} {f['what']}: {f['detail']}")
        if f["fix"]:
            lines.append(f"        fix: {f['fix']}")
    return "\n".join(lines)
