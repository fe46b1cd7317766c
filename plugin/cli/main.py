"""``vmware-coord``: the coordinated snapshot transaction around ``zfs snapshot``.

For ZFS hosts that are not TrueNAS (and for the demo): the same engine the middlewared
plugin drives, configured by a file, with hooks for sanoid and zrepl.

Exit codes (stable, for scripts):
  0  done; every VM reached the consistency its policy requires
  1  the ZFS snapshot was taken, but not every VM reached its requirement, or VMware
     coordination was not possible at all (the snapshot says vmsynced=N and why), or a
     VMware snapshot or a stopped VM is left for reconcile (the report names it)
  2  bad input: the configuration, a document, an argument or a scheduler's environment
     (the message names the field); nothing was done
  3  the ZFS snapshot could not be taken (or, for a post hook, does not exist); the VMware
     snapshots were removed and every VM is running again
  4  something else failed (VMware unreachable for a plan, the product's state directory
     unusable for a command that needs it, a post hook without its pre hook, ...)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from ..app import history, hooks
from ..app.restore import restore as restore_vm
from ..app.restore_attach import attach_disk
from ..app.restore_cleanup import cleanup as restore_cleanup
from ..app.restore_cleanup import list_restores, reconcile_restores
from ..app.restore_ports import NoLunExport
from ..app.restore_steps import RestoreFailed, RestoreParts, RestoreResult
from ..app.settling import settle
from ..app.snapshot import coordinated_snapshot, default_name
from ..domain.errors import InvalidInput, NotFound, StateError, printable
from ..domain.restore import RestoreRequest
from ..domain.zfs_names import dataset_problem, snapshot_problem
from ..engine.coordinator import Coordinator
from ..engine.journal import Journal, JournalError
from ..engine.ports import HypervisorFailure
from ..store.policy_repo import MAX_ID, SqlitePolicyRepository
from ..vsphere.hypervisor import VsphereHypervisor
from ..vsphere.restore import VsphereRestore
from ..vsphere.tls import server_fingerprint
from ..zfs import snapshot as zfs_snapshot
from ..zfs.sharing import ExportedAlready, ZfsSharing
from ..zfs.shell import LocalShell, Shell, ShellError
from . import doctor, documents, render
from .config import CliConfig, load_config

EXIT_OK, EXIT_DEGRADED, EXIT_INPUT, EXIT_ZFS, EXIT_OTHER = 0, 1, 2, 3, 4
# Which of several outcomes a command with many datasets reports (the worst one).
_SEVERITY = {EXIT_OK: 0, EXIT_DEGRADED: 1, EXIT_OTHER: 2, EXIT_ZFS: 3, EXIT_INPUT: 4}
DEFAULT_CONFIG = os.environ.get("VMWARE_COORD_CONFIG", "/etc/vmware-coord/config.toml")
log = logging.getLogger("truenas_vmware_coord.cli")


def worst(*codes: int) -> int:
    return max(codes, key=_SEVERITY.__getitem__, default=EXIT_OK)


class Cli:
    def __init__(self, args: argparse.Namespace, shell: Shell) -> None:
        self.args = args
        self.shell = shell
        self._config: CliConfig | None = None
        self.abandon_threads = False   # exit without waiting for late VMware calls (pre hook)

    @property
    def config(self) -> CliConfig:
        if self._config is None:
            self._config = load_config(self.args.config)
        return self._config

    def out(self, document: Any, human: Callable[[Any], str]) -> None:
        print(json.dumps(document, indent=2, sort_keys=True) if self.args.json else human(document))

    def progress(self, message: str, _outcome: object) -> None:
        if (not self.args.json and sys.stderr.isatty()) or self.args.progress:
            sys.stderr.write(f"  {message}\n")  # one write: workers report concurrently
            sys.stderr.flush()

    def coordinator(self) -> Coordinator:
        """The engine with this configuration; ``StateError`` when the journal or the policy
        store cannot be used (nothing has been done to any VM then)."""
        cfg = self.config
        for endpoint_id in sorted({m.endpoint_id for m in cfg.mappings}):
            cfg.password_for(endpoint_id)   # a missing password is bad input, said up front
        with SqlitePolicyRepository(cfg.policy_db) as repo:
            policies = [p for p in repo.list() if p.enabled]
        journal = Journal(cfg.journal_path)
        if journal.moved_aside is not None:
            warn(f"the journal was corrupted and has been moved aside to {journal.moved_aside}; a new "
                 "one is used ('vmware-coord doctor' says what that means)")
        return Coordinator(
            connector=cfg.connector(), journal=journal,
            mappings=cfg.mappings, storage=lambda: cfg.storage_facts(self.shell), policies=policies,
            default_ladder=cfg.settings.default_ladder, config=cfg.settings.engine,
            progress=self.progress, libvirt_default_ladder=cfg.settings.libvirt_default_ladder,
            local_endpoints=cfg.local_endpoints)

    def check_dataset(self, dataset: str) -> list[str]:
        """Refuse a dataset ZFS does not have (its name was checked with the arguments),
        before any VMware call; returns it with its descendants."""
        tree = zfs_snapshot.dataset_tree(self.shell, dataset)
        if tree is None:
            raise InvalidInput.single("dataset", f"{dataset} does not exist")
        return tree

    # --- commands ------------------------------------------------------------------------

    def plan(self) -> int:
        self.check_dataset(self.args.dataset)
        plan, errors = self.coordinator().plan(self.args.dataset, self.args.recursive, self.args.exclude)
        document = plan.to_dict() | {"endpoint_errors": errors}
        self.out(document, lambda d: render.plan_table(d) + "".join(
            f"\nendpoint {e}: {m}" for e, m in d["endpoint_errors"].items()))
        return EXIT_OTHER if errors else EXIT_OK

    def snapshot(self) -> int:
        dataset, recursive = self.args.dataset, self.args.recursive
        tree = self.check_dataset(dataset)
        name = self.args.name or default_name()
        problem = snapshot_problem(dataset, name)
        if problem:
            raise InvalidInput.single("--name", f"'{name}' {problem}")
        wanted = {f"{d}@{name}" for d in (tree if recursive else [dataset])}
        taken_already = sorted(wanted & set(zfs_snapshot.list_snapshots(self.shell, dataset)))
        if taken_already:
            raise InvalidInput.single("--name", f"{', '.join(taken_already)} already exists")
        failure: list[str] = []

        def take(properties: dict[str, str]) -> str:
            try:
                return zfs_snapshot.create_snapshot(self.shell, dataset, name, recursive, properties)
            except Exception as exc:  # noqa: BLE001 - any failure here is the ZFS snapshot's
                failure.append(str(exc))
                return ""

        def relabel(_snapshot: str, properties: dict[str, str]) -> None:
            for snapshot in sorted(wanted):   # a recursive snapshot's children carry them too
                self._label(snapshot, properties)

        try:
            coordinator = self.coordinator()
            report = coordinated_snapshot(coordinator, dataset, take, recursive, self.args.exclude, relabel)
        except StateError as exc:   # raised before any VM was touched
            return self.uncoordinated(dataset, name, recursive, str(exc))
        self.out(report, render.report_table)
        if report.get("in_doubt"):
            warn(f"the creates of {', '.join(report['in_doubt'])} got no answer and may still land: "
                 "watching for them to remove them")
            left = settle(coordinator)
            if left:
                warn(f"still in doubt: {', '.join(left)}; 'vmware-coord reconcile' removes them if they land")
        if failure:
            error(f"the ZFS snapshot failed: {failure[0]}; the VMware snapshots were removed")
            return EXIT_ZFS
        for warning in report.get("warnings", ()):
            warn(warning)
        if report.get("leftovers"):
            warn(f"left for reconcile: {', '.join(report['leftovers'])} ('vmware-coord reconcile' finishes "
                 "them; run it from cron)")
        return EXIT_OK if report["vmsynced"] and not report.get("leftovers") else EXIT_DEGRADED

    def uncoordinated(self, dataset: str, name: str, recursive: bool, reason: str) -> int:
        """The product's own state is unusable: no VM is touched, the snapshot is taken anyway."""
        error(f"{reason}\nno VM was touched; the ZFS snapshot is taken without VMware coordination "
              "(vmsynced=N); 'vmware-coord doctor' says how to repair the state")
        try:
            snapshot = zfs_snapshot.create_snapshot(self.shell, dataset, name, recursive,
                                                    hooks.not_coordinated(reason))
        except ShellError as exc:
            error(f"the ZFS snapshot failed: {exc}")
            return EXIT_ZFS
        self.out({"snapshot": snapshot, "vmsynced": False, "coordinated": False, "reason": reason},
                 lambda d: f"{d['snapshot']}: vmsynced=N (not coordinated)")
        return EXIT_DEGRADED

    def hook(self) -> int:
        """sanoid's and zrepl's pre/post snapshot hooks (app/hooks.py has their contracts)."""
        try:
            call = hooks.read_call(os.environ, self.args.phase)
        except InvalidInput as exc:
            pre = self.args.phase == "pre" or hooks.PHASES.get(
                os.environ.get("SANOID_SCRIPT") or os.environ.get("ZREPL_HOOKTYPE") or "") == "pre"
            if not pre or self.args.strict:
                raise
            error(f"{exc}\nno VM was touched; the snapshot goes ahead without VMware coordination")
            return EXIT_OK
        if call.dry_run:
            return EXIT_OK
        if call.phase == "pre":
            return self._pre(call)
        return self._post(call)

    def _hook_settings(self, call: hooks.HookCall) -> hooks.HookSettings:
        settings = self.config.hooks
        recursive = settings.recursive | (set(call.datasets) if self.args.recursive else set())
        return hooks.HookSettings(strict=settings.strict or self.args.strict, recursive=frozenset(recursive),
                                  timeout_s=self.args.timeout or settings.timeout_s,
                                  post_wait_s=settings.post_wait_s)

    def _pre(self, call: hooks.HookCall) -> int:
        """Never stops the scheduler's snapshot unless strict mode says so: without it every
        failure is reported and the exit is 0 (the post hook labels the snapshot N)."""
        self.abandon_threads = True
        try:
            settings = self._hook_settings(call)
            timeout = call.timeout_s or settings.timeout_s
            seconds = hooks.budget(timeout, process_age_s())
            coordinator = self.coordinator()
            begun = [hooks.pre(coordinator, call, settings, d, seconds) for d in call.datasets]
            contexts = [context for context, _ in begun]
            self._label_finished(coordinator, [run for _, finished in begun for run in finished])
        except Exception as exc:  # noqa: BLE001 - reported; the scheduler decides what follows
            code = EXIT_INPUT if isinstance(exc, InvalidInput) else EXIT_OTHER
            error(f"{describe(exc)}\nno VM was touched" + (
                "" if self.args.strict else "; the snapshot goes ahead without VMware coordination "
                                            "and the post hook labels it vmsynced=N"))
            return code if self.args.strict else EXIT_OK
        self.out([c.to_dict() for c in contexts], lambda docs: "\n".join(
            f"{d['dataset']}: run {d['run_id']} begun, vmsynced={'Y' if d['vmsynced'] else 'N'}"
            for d in docs))
        below = [c for c in contexts if not c.vmsynced]
        if settings.strict and below:
            for context in below:
                coordinator.end(context)   # no post hook will come for a refused snapshot
            names = ", ".join(v.name for c in below for v in c.vms if not v.compliant) or "an endpoint"
            error(f"strict: not every VM reached its requirement ({names}); the VMware snapshots were "
                  "removed, and the scheduler should take no snapshot")
            return EXIT_DEGRADED
        return EXIT_OK

    def _label(self, snapshot: str, properties: dict[str, str]) -> None:
        zfs_snapshot.set_properties(self.shell, snapshot, properties)

    def _label_finished(self, coordinator: Coordinator, finished: list[str]) -> None:
        for snapshot in hooks.label_finished(coordinator, finished, self._snapshots_under, self._label):
            warn(f"{snapshot}: its hook was stopped by the scheduler; labelled from what was recorded")

    def _post(self, call: hooks.HookCall) -> int:
        """Within the scheduler's timeout too: labels first, the rest left to a detached
        reconcile when it does not fit."""
        self.abandon_threads = True
        try:
            coordinator = self.coordinator()
        except (InvalidInput, StateError) as exc:
            for dataset in call.datasets:
                self._label_existing(call, dataset, hooks.not_coordinated(str(exc)))
            error(f"{exc}\nthe snapshots were labelled vmsynced=N")
            return EXIT_INPUT if isinstance(exc, InvalidInput) else EXIT_OTHER
        timeout = call.timeout_s or self.args.timeout or self.config.hooks.timeout_s
        status, reports = EXIT_OK, []
        for dataset in call.datasets:
            existing = self._snapshots_under(dataset)
            try:
                report = hooks.post(coordinator, call, dataset, existing, self._label,
                                    hooks.budget(timeout, process_age_s()))
            except (LookupError, JournalError) as exc:
                if isinstance(exc, JournalError):
                    self._label_existing(call, dataset, hooks.not_coordinated(str(exc)))
                understood = isinstance(exc, LookupError) and call.pre_failed   # the scheduler said so
                hint = "" if understood or isinstance(exc, JournalError) else ": was the pre hook run?"
                error(f"{dataset}: {exc}{hint}")
                status = worst(status, EXIT_DEGRADED if understood else EXIT_OTHER)
                continue
            reports.append(report)
            for missing in report["missing_snapshots"]:
                error(f"the ZFS snapshot {missing} does not exist (the scheduler's zfs snapshot failed?); "
                      "the VMware snapshots were removed")
            for child in report["uncoordinated_children"]:
                error(f"{child}: taken recursively, but its VMs were not prepared: add {dataset} to "
                      "hooks.recursive (sanoid recursive = zfs); labelled vmsynced=N")
            for warning in report.get("warnings", ()):
                warn(warning)
            complete = report["vmsynced"] and not report.get("leftovers") and not report.get("ending")
            status = worst(status, EXIT_ZFS if report["missing_snapshots"] else
                           EXIT_OK if complete else EXIT_DEGRADED)
        self.out(reports, lambda docs: "\n\n".join(render.report_table(d) for d in docs))
        if any(r.get("in_doubt") or r.get("ending") for r in reports):
            self._settle_in_background()
        return status

    def _settle_in_background(self) -> None:
        """A hook must end within its scheduler's timeout: creates that may still land are
        watched by a detached ``reconcile --settle`` instead."""
        argv = [sys.executable, "-m", "truenas_vmware_coord.cli.main", "-c", str(self.args.config),
                "reconcile", "--settle"]
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                         stderr=subprocess.DEVNULL, start_new_session=True)

    def _snapshots_under(self, dataset: str) -> list[str]:
        try:
            return zfs_snapshot.list_snapshots(self.shell, dataset)
        except ShellError as exc:
            warn(f"the snapshots of {dataset} could not be listed: {exc}")
            return []

    def _label_existing(self, call: hooks.HookCall, dataset: str, properties: dict[str, str]) -> None:
        present = set(self._snapshots_under(dataset))
        for snapshot in call.snapshots(dataset):
            if snapshot in present:
                try:
                    zfs_snapshot.set_properties(self.shell, snapshot, properties)
                except ShellError as exc:
                    warn(f"{snapshot} could not be labelled: {exc}")

    def reconcile(self) -> int:
        coordinator = self.coordinator()
        if self.args.settle:
            settle(coordinator)
        result = coordinator.reconcile(sweep=True)
        self._label_finished(coordinator, result["finished"])
        result["restores"] = reconcile_restores(self.restore_parts(coordinator.parts.journal))
        self.out(result, lambda r: (
            f"undone: {len(r['undone'])}, swept: {len(r['swept'])}, still open: {r['still_open']}"
            + "".join(f"\n  {u['vm']}: {u['kind']} {u['result']}" for u in r["undone"])
            + "".join(f"\n  swept {s}" for s in r["swept"])
            + "".join(f"\n  restore {x['restore_id']}: {x['result']}" for x in r["restores"])
            + "".join(f"\n  error {e}: {m}" for e, m in r["endpoint_errors"].items())))
        unsettled = any(not x["result"].startswith(("finished", "undone", "cleaned"))
                        for x in result["restores"])
        return EXIT_OK if not result["still_open"] and not result["endpoint_errors"] and not unsettled \
            else EXIT_OTHER

    # This tool drives no iSCSI target (TrueNAS's or any other): a zvol's clone is not exposed.
    NO_ISCSI = ("restoring from it exposes its clone as a new iSCSI LUN, which is done only through "
                "TrueNAS's iSCSI API (the vmware_coord.restore job, or the web page's Restore view); on "
                "another host, clone the snapshot, map the clone into the iSCSI target the ESXi hosts use, "
                "and mount its VMFS copy with a new signature by hand")

    def restore_parts(self, journal: Journal | None = None) -> RestoreParts:
        cfg = self.config

        def open_endpoint(endpoint_id: str) -> VsphereRestore:
            if endpoint_id not in cfg.endpoints:
                raise InvalidInput.single("snapshot", f"its VM is on endpoint {endpoint_id}, which this "
                                                      "configuration does not have")
            settings = cfg.endpoints[endpoint_id]
            return VsphereRestore(VsphereHypervisor.connect(settings, cfg.password_for(endpoint_id)))

        sharing = ZfsSharing(self.shell) if cfg.restore_share == "sharenfs" else ExportedAlready()
        return RestoreParts(journal or Journal(cfg.journal_path), self.shell, sharing, open_endpoint,
                            cfg.addresses, NoLunExport(self.NO_ISCSI))

    def restore(self) -> int:
        """``restore DATASET@SNAPSHOT --vm NAME``, ``restore list``, ``restore cleanup ID``,
        ``restore attach-disk ID --disk N --to VM``."""
        args = self.args
        action = args.what if args.what in RESTORE_ACTIONS else "restore"
        _refuse_options(args, action)
        if action == "list":
            if args.restore_id:
                raise InvalidInput.single("restore", f"unexpected '{args.restore_id}' after 'restore list'")
            parts = self.restore_parts(Journal(self.config.journal_path, readonly=True))
            self.out(list_restores(parts, args.limit or 20), render.restores_table)
            return EXIT_OK
        parts = self.restore_parts()
        if action != "restore" and not args.restore_id:
            raise InvalidInput.single("restore", f"give the restore's id: 'restore {action} ID' "
                                                 "('restore list')")
        try:
            result = self._restore_action(parts, action)
        except RestoreFailed as exc:
            self.out(exc.result.to_dict(), render.restore_summary)
            error(str(exc))
            return EXIT_OTHER
        self.out(result.to_dict(), render.restore_summary)
        return EXIT_OK

    def _restore_action(self, parts: RestoreParts, action: str) -> RestoreResult:
        args = self.args
        if action == "cleanup":
            return restore_cleanup(parts, args.restore_id, args.force, self.restore_progress)
        if action == "attach-disk":
            if args.disk is None or not args.to:
                raise InvalidInput.single("--disk" if args.disk is None else "--to",
                                          "attach-disk needs --disk N and --to VM")
            return attach_disk(parts, args.restore_id, args.disk, args.to, args.writable)
        if args.restore_id:
            raise InvalidInput.single("restore", f"unexpected '{args.restore_id}' after the snapshot")
        if not args.vm:
            raise InvalidInput.single("--vm", "give the name of the VM to restore")
        request = RestoreRequest(args.what, args.vm, args.new_name, args.host, args.power_on,
                                 args.connect_network)
        return restore_vm(parts, request, self.restore_progress)

    def restore_progress(self, percent: int, description: str) -> None:
        self.progress(f"[{percent:3d}%] {description}", None)

    def doctor(self) -> int:
        findings = doctor.examine(self.config, connect=self.args.connect)
        self.out([f.to_dict() for f in findings], doctor.render)
        return EXIT_OK if all(f.ok for f in findings) else EXIT_OTHER

    def report(self) -> int:
        key = self.args.run
        record = history.find_run(Journal(self.config.journal_path, readonly=True), key)
        if record is None:
            raise NotFound("run", key)
        self.out(record.document, render.report_table)
        return EXIT_OK

    def runs(self) -> int:
        docs = history.runs(Journal(self.config.journal_path, readonly=True), self.args.limit)
        self.out(docs, lambda ds: render.table(
            ["run", "dataset", "snapshot", "state", "started", "vmsynced"],
            [[d["run_id"], d["dataset"], d["snapshot"] or "-", d["state"],
              time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["started_at"])),
              {True: "Y", False: "N", None: "-"}[d["vmsynced"]]] for d in ds]))
        return EXIT_OK

    def fingerprint(self) -> int:
        value = server_fingerprint(self.args.host, self.args.port, self.args.timeout)
        self.out({"host": self.args.host, "port": self.args.port, "sha256_fingerprint": value},
                 lambda d: d["sha256_fingerprint"])
        return EXIT_OK

    def policy(self) -> int:
        action = self.args.action
        if action == "list":
            with SqlitePolicyRepository(self.config.policy_db, readonly=True) as repo:
                docs = [p.to_dict() for p in repo.list()]
            self.out(docs, lambda ds: render.table(
                ["id", "priority", "name", "enabled", "ladder", "match"],
                [[d["id"], d["priority"], d["name"], d["enabled"], " > ".join(d["ladder"]),
                  json.dumps(d.get("match") or {}, sort_keys=True)] for d in ds]))
            return EXIT_OK
        document = None if action == "delete" else self._document()
        with SqlitePolicyRepository(self.config.policy_db) as repo:
            if action == "delete":
                repo.delete(self._policy_id(repo))
                return EXIT_OK
            if action == "create":
                policy = repo.create(document)
            else:
                policy = repo.update(self._policy_id(repo), document)
        self.out(policy.to_dict(), lambda d: f"policy {d['id']} '{d['name']}' saved")
        return EXIT_OK

    def _document(self) -> Any:
        if self.args.document is not None:
            return documents.parse_json(self.args.document, "document")
        return documents.parse_json(documents.read_stream(sys.stdin.buffer, "document"), "document")

    def _policy_id(self, repo: SqlitePolicyRepository) -> int:
        ref = self.args.policy
        if not ref:
            raise InvalidInput.single("policy", "give the id or the name of the policy")
        if ref.isdigit():
            if int(ref) > MAX_ID:
                raise InvalidInput.single("policy", f"{ref} is not a policy id (ids are at most {MAX_ID})")
            return int(ref)
        return repo.get_by_name(ref).id or 0


def process_age_s() -> float:
    """Seconds since this process started (the scheduler's timeout started then too)."""
    try:
        fields = open("/proc/self/stat").read().rpartition(")")[2].split()   # noqa: SIM115
        start_ticks = int(fields[19])
        uptime = float(open("/proc/uptime").read().split()[0])   # noqa: SIM115
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def describe(exc: BaseException) -> str:
    if isinstance(exc, (InvalidInput, StateError, HypervisorFailure, NotFound)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _lines(message: str) -> str:
    # Our own messages may have several lines; nothing in them may control the terminal.
    return "\n".join(printable(line) for line in str(message).split("\n"))


def error(message: str) -> None:
    print(f"error: {_lines(message)}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"warning: {_lines(message)}", file=sys.stderr)


RESTORE_ACTIONS = ("list", "cleanup", "attach-disk")
# Which options each restore action takes (dest names): any other one given is bad input.
_RESTORE_OPTIONS = {"restore": {"vm", "new_name", "host", "power_on", "connect_network"},
                    "list": {"limit"}, "cleanup": {"force"}, "attach-disk": {"disk", "to", "writable"}}
_RESTORE_FLAGS = {"vm": "--vm", "new_name": "--as", "host": "--host", "power_on": "--power-on",
                  "connect_network": "--connect-network", "limit": "--limit", "force": "--force",
                  "disk": "--disk", "to": "--to", "writable": "--writable"}


def _refuse_options(args: argparse.Namespace, action: str) -> None:
    given = [dest for dest in _RESTORE_FLAGS if getattr(args, dest) not in (None, False)]
    wrong = [_RESTORE_FLAGS[d] for d in given if d not in _RESTORE_OPTIONS[action]]
    if wrong:
        raise InvalidInput.single(wrong[0], f"does not apply to 'restore {action}'"
                                  if action != "restore" else "does not apply to a restore")


# --- arguments ----------------------------------------------------------------------------


def _bounded_number(kind: type, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value
    return parse


def _dataset(text: str) -> str:
    problem = dataset_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(printable(f"'{text}' {problem}"))
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:   # argparse's own exit code for usage is 2 too
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmware-coord", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (TOML or JSON)")
    parser.add_argument("--json", action="store_true", help="print JSON documents instead of tables")
    parser.add_argument("--progress", action="store_true", help="print per-VM progress on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def scoped(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("dataset", type=_dataset)
        p.add_argument("-r", "--recursive", action="store_true", help="include child datasets")
        p.add_argument("-x", "--exclude", action="append", default=[], type=_dataset,
                       help="a child dataset to leave out")
        return p

    scoped("plan", "dry run: what a snapshot would do to each VM")
    snap = scoped("snapshot", "VMware snapshots -> zfs snapshot -> remove them")
    snap.add_argument("-n", "--name", help="snapshot name (default vmware-coord-YYYYmmdd-HHMMSS)")
    hook = sub.add_parser("hook", help="sanoid/zrepl pre or post snapshot hook (the phase may come "
                                       "from ZREPL_HOOKTYPE or SANOID_SCRIPT instead)")
    hook.add_argument("phase", nargs="?", choices=["pre", "post"])
    hook.add_argument("--recursive", action="store_true",
                      help="the scheduler snapshots recursively (sanoid recursive = zfs)")
    hook.add_argument("--strict", action="store_true",
                      help="pre fails when not every VM reached its requirement")
    hook.add_argument("--timeout", type=_bounded_number(float, 2, 3600),
                      help="the scheduler's hook timeout in seconds (sanoid's script_timeout)")
    rec = sub.add_parser("reconcile", help="finish interrupted runs, remove orphaned VMware snapshots")
    rec.add_argument("--settle", action="store_true",
                     help="first watch for creates that got no answer until they land or their window passed")
    doc = sub.add_parser("doctor", help="check the configuration and the state directory, say how to repair")
    doc.add_argument("--connect", action="store_true", help="also log in to every endpoint")
    rep = sub.add_parser("report", help="the per-VM manifest of a run or of a ZFS snapshot")
    rep.add_argument("run", help="a run id, or dataset@snapshot")
    runs = sub.add_parser("runs", help="recent runs")
    runs.add_argument("--limit", type=_bounded_number(int, 1, 100000), default=20)
    for name, text in (("install-plugin", "place the loader module in middlewared's plugins directory"),
                       ("uninstall-plugin", "remove the loader module from middlewared's plugins directory")):
        inst = sub.add_parser(name, help=text)
        inst.add_argument("--plugins-dir", help="default: the plugins/ of the importable middlewared")
        inst.add_argument("--site", help="where truenas_vmware_coord is installed (default: this one)")
    fp = sub.add_parser("fingerprint", help="the SHA-256 fingerprint of a server's certificate, to pin")
    fp.add_argument("host")
    fp.add_argument("--port", type=_bounded_number(int, 1, 65535), default=443)
    fp.add_argument("--timeout", type=_bounded_number(float, 0.1, 300), default=10.0)
    res = sub.add_parser("restore", help="restore a VM from a coordinated snapshot beside its original; "
                                         "restore list | cleanup ID [--force] | "
                                         "attach-disk ID --disk N --to VM")
    res.add_argument("what", help="DATASET@SNAPSHOT to restore from, or list, cleanup, attach-disk")
    res.add_argument("restore_id", nargs="?", help="the restore's id (cleanup, attach-disk)")
    res.add_argument("--vm", help="the VM's name in the snapshot's manifest")
    res.add_argument("--as", dest="new_name", help="the restored VM's name (default <vm>-restored-<id>)")
    res.add_argument("--host", help="the ESXi host to mount the clone on (default: the VM's host)")
    res.add_argument("--power-on", action="store_true", help="power the restored VM on")
    res.add_argument("--connect-network", action="store_true",
                     help="leave its NICs connected (default: not connected at power-on)")
    res.add_argument("--force", action="store_true", help="cleanup: power the restored VM off if it is on")
    res.add_argument("--disk", type=_bounded_number(int, 0, 255), help="attach-disk: the disk's number, 0 up")
    res.add_argument("--to", help="attach-disk: the VM to attach it to")
    res.add_argument("--writable", action="store_true",
                     help="attach-disk: writable (default: read-only, independent non-persistent)")
    res.add_argument("--limit", type=_bounded_number(int, 1, 100000), help="list: how many (default 20)")
    pol = sub.add_parser("policy", help="per-VM exception policies")
    pol.add_argument("action", choices=["list", "create", "update", "delete"])
    pol.add_argument("policy", nargs="?", help="id or name (update, delete)")
    pol.add_argument("document", nargs="?", help="JSON document (default: standard input)")
    return parser


def main(argv: list[str] | None = None, shell: Shell | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "policy" and args.action == "create" and args.policy and not args.document:
        args.document, args.policy = args.policy, None
    # Without -v only the tool's own lines: what the engine logs is in the report already.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("install-plugin", "uninstall-plugin"):
        from . import install
        try:
            return install.main(args.command, args.plugins_dir, args.site)
        except OSError as exc:
            error(str(exc))
            return EXIT_OTHER
    cli = Cli(args, shell or LocalShell())
    code = run(cli)
    if cli.abandon_threads:
        # A pre hook must be gone before its scheduler's timeout: VMware calls still in flight
        # are abandoned; their intents are journaled, and post or reconcile settles them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def run(cli: Cli) -> int:
    """The command, its failures as exit codes and one line each (a traceback only with -v)."""
    try:
        return getattr(cli, cli.args.command)()
    except (InvalidInput, NotFound) as exc:
        error(str(exc) if isinstance(exc, InvalidInput) else f"{cli.args.command}: {exc}")
        return EXIT_INPUT
    except StateError as exc:
        error(f"{exc}\n'vmware-coord doctor' checks the state directory")
        return EXIT_OTHER
    except (HypervisorFailure, OSError, LookupError, ShellError) as exc:
        error(describe(exc))
        return EXIT_OTHER
    except Exception as exc:  # noqa: BLE001 - never a traceback for a user; -v logs it
        log.info("unexpected failure", exc_info=True)
        error(f"unexpected {describe(exc)} (run with -v for details)")
        return EXIT_OTHER


def hook_main() -> int:
    """``vmware-coord-hook``: ``vmware-coord hook`` for schedulers that run a hook without
    arguments (zrepl): the phase comes from ZREPL_HOOKTYPE or SANOID_SCRIPT, the
    configuration from VMWARE_COORD_CONFIG (default /etc/vmware-coord/config.toml)."""
    return main(["hook"])


if __name__ == "__main__":
    sys.exit(main())
