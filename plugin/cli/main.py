"""``vmware-coord``: the coordinated snapshot transaction around ``zfs snapshot``.

For ZFS hosts that are not TrueNAS (and for the demo): the same engine the middlewared
plugin drives, configured by a file, with hooks for sanoid and zrepl.

Exit codes (stable, for scripts):
  0  done; every VM reached the consistency its policy requires
  1  done, but not every VM did (the ZFS snapshot exists; see the report)
  2  bad input: the configuration, a document or the arguments (the message names the field)
  3  the ZFS snapshot could not be taken
  4  something else failed (an unknown run, VMware unreachable for a plan, ...)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ..app import history
from ..app.ending import end_and_label
from ..app.snapshot import coordinated_snapshot, default_name
from ..domain.errors import InvalidInput
from ..engine.coordinator import Coordinator
from ..engine.journal import Journal
from ..store.policy_repo import SqlitePolicyRepository
from ..vsphere.errors import VsphereError
from ..vsphere.hypervisor import VsphereConnector
from ..vsphere.tls import server_fingerprint
from ..zfs import snapshot as zfs_snapshot
from ..zfs.shell import LocalShell, Shell, ShellError
from . import render
from .config import CliConfig, load_config

EXIT_OK, EXIT_DEGRADED, EXIT_INPUT, EXIT_ZFS, EXIT_OTHER = 0, 1, 2, 3, 4
DEFAULT_CONFIG = os.environ.get("VMWARE_COORD_CONFIG", "/etc/vmware-coord/config.toml")


class Cli:
    def __init__(self, args: argparse.Namespace, shell: Shell) -> None:
        self.args = args
        self.shell = shell
        self._config: CliConfig | None = None

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
        cfg = self.config
        for endpoint_id in sorted({m.endpoint_id for m in cfg.mappings}):
            cfg.password_for(endpoint_id)   # a missing password is bad input, said up front
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with SqlitePolicyRepository(cfg.policy_db) as repo:
            policies = [p for p in repo.list() if p.enabled]
        return Coordinator(
            connector=VsphereConnector(cfg.endpoints, cfg.password_for),
            journal=Journal(cfg.journal_path), mappings=cfg.mappings,
            storage=lambda: cfg.storage_facts(self.shell), policies=policies,
            default_ladder=cfg.settings.default_ladder, config=cfg.settings.engine,
            progress=self.progress)

    # --- commands ------------------------------------------------------------------------

    def plan(self) -> int:
        plan, errors = self.coordinator().plan(self.args.dataset, self.args.recursive, self.args.exclude)
        document = plan.to_dict() | {"endpoint_errors": errors}
        self.out(document, lambda d: render.plan_table(d) + "".join(
            f"\nendpoint {e}: {m}" for e, m in d["endpoint_errors"].items()))
        return EXIT_OTHER if errors else EXIT_OK

    def snapshot(self) -> int:
        coordinator = self.coordinator()
        name = self.args.name or default_name()
        failure: list[str] = []

        def take(properties: dict[str, str]) -> str:
            try:
                return zfs_snapshot.create_snapshot(self.shell, self.args.dataset, name,
                                                    self.args.recursive, properties)
            except ShellError as exc:
                failure.append(str(exc))
                return ""

        report = coordinated_snapshot(coordinator, self.args.dataset, take, self.args.recursive,
                                      self.args.exclude)
        self.out(report, render.report_table)
        if failure:
            print(f"error: the ZFS snapshot failed: {failure[0]}", file=sys.stderr)
            return EXIT_ZFS
        return EXIT_OK if report["vmsynced"] else EXIT_DEGRADED

    def hook(self) -> int:
        """sanoid (SANOID_*) and zrepl (ZREPL_*) pre/post snapshot hooks."""
        env = os.environ
        datasets = [d for d in env.get("SANOID_TARGETS", env.get("ZREPL_FS", "")).split(",") if d]
        snapnames = [s for s in env.get("SANOID_SNAPNAMES", env.get("ZREPL_SNAPNAME", "")).split(",") if s]
        if not datasets:
            raise InvalidInput.single("environment", "neither SANOID_TARGETS nor ZREPL_FS is set")
        if env.get("ZREPL_DRYRUN") == "true":
            return EXIT_OK
        coordinator = self.coordinator()
        if self.args.phase == "pre":
            coordinator.reconcile(sweep=False)
            results = [coordinator.begin(d, detached=True) for d in datasets]
            self.out([c.to_dict() for c in results], lambda docs: "\n".join(
                f"{d['dataset']}: run {d['run_id']} begun, vmsynced={'Y' if d['vmsynced'] else 'N'}"
                for d in docs))
            return EXIT_OK
        status = EXIT_OK
        reports = []
        for dataset in datasets:
            record = coordinator.journal.latest_open_run(dataset)
            if record is None:
                print(f"error: no begun run for {dataset}: was the pre hook run?", file=sys.stderr)
                status = EXIT_OTHER
                continue
            snapshot = f"{dataset}@{snapnames[0]}" if snapnames else None
            # sanoid and zrepl take the snapshot themselves: label it afterwards.
            report = end_and_label(coordinator, record.run_id, snapshot,
                                   lambda name, props: zfs_snapshot.set_properties(self.shell, name, props))
            reports.append(report)
            if not report["vmsynced"] and status == EXIT_OK:
                status = EXIT_DEGRADED
        self.out(reports, lambda docs: "\n\n".join(render.report_table(d) for d in docs))
        return status

    def reconcile(self) -> int:
        result = self.coordinator().reconcile(sweep=True)
        self.out(result, lambda r: (
            f"undone: {len(r['undone'])}, swept: {len(r['swept'])}, still open: {r['still_open']}"
            + "".join(f"\n  {u['vm']}: {u['kind']} {u['result']}" for u in r["undone"])
            + "".join(f"\n  swept {s}" for s in r["swept"])
            + "".join(f"\n  error {e}: {m}" for e, m in r["endpoint_errors"].items())))
        return EXIT_OK if not result["still_open"] and not result["endpoint_errors"] else EXIT_OTHER

    def report(self) -> int:
        key = self.args.run
        record = history.find_run(Journal(self.config.journal_path), key)
        if record is None:
            print(f"error: no run {key!r} in {self.config.journal_path}", file=sys.stderr)
            return EXIT_OTHER
        self.out(record.document, render.report_table)
        return EXIT_OK

    def runs(self) -> int:
        docs = history.runs(Journal(self.config.journal_path), self.args.limit)
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
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with SqlitePolicyRepository(self.config.policy_db) as repo:
            action = self.args.action
            if action == "list":
                docs = [p.to_dict() for p in repo.list()]
                self.out(docs, lambda ds: render.table(
                    ["id", "priority", "name", "enabled", "ladder", "match"],
                    [[d["id"], d["priority"], d["name"], d["enabled"], " > ".join(d["ladder"]),
                      json.dumps(d.get("match") or {}, sort_keys=True)] for d in ds]))
                return EXIT_OK
            if action == "delete":
                repo.delete(self._policy_id(repo))
                return EXIT_OK
            document = json.loads(self.args.document) if self.args.document else json.load(sys.stdin)
            if action == "create":
                policy = repo.create(document)
            else:
                policy = repo.update(self._policy_id(repo), document)
            self.out(policy.to_dict(), lambda d: f"policy {d['id']} '{d['name']}' saved")
            return EXIT_OK

    def _policy_id(self, repo: SqlitePolicyRepository) -> int:
        ref = self.args.policy
        return int(ref) if ref.isdigit() else repo.get_by_name(ref).id


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmware-coord", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="configuration file (TOML or JSON)")
    parser.add_argument("--json", action="store_true", help="print JSON documents instead of tables")
    parser.add_argument("--progress", action="store_true", help="print per-VM progress on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def scoped(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("dataset")
        p.add_argument("-r", "--recursive", action="store_true", help="include child datasets")
        p.add_argument("-x", "--exclude", action="append", default=[], help="a child dataset to leave out")
        return p

    scoped("plan", "dry run: what a snapshot would do to each VM")
    snap = scoped("snapshot", "VMware snapshots -> zfs snapshot -> remove them")
    snap.add_argument("-n", "--name", help="snapshot name (default vmware-coord-YYYYmmdd-HHMMSS)")
    hook = sub.add_parser("hook", help="sanoid/zrepl pre or post snapshot hook")
    hook.add_argument("phase", choices=["pre", "post"])
    sub.add_parser("reconcile", help="finish interrupted runs, remove orphaned VMware snapshots")
    rep = sub.add_parser("report", help="the per-VM manifest of a run or of a ZFS snapshot")
    rep.add_argument("run", help="a run id, or dataset@snapshot")
    runs = sub.add_parser("runs", help="recent runs")
    runs.add_argument("--limit", type=int, default=20)
    for name, text in (("install-plugin", "place the loader module in middlewared's plugins directory"),
                       ("uninstall-plugin", "remove the loader module from middlewared's plugins directory")):
        inst = sub.add_parser(name, help=text)
        inst.add_argument("--plugins-dir", help="default: the plugins/ of the importable middlewared")
        inst.add_argument("--site", help="where truenas_vmware_coord is installed (default: this one)")
    fp = sub.add_parser("fingerprint", help="the SHA-256 fingerprint of a server's certificate, to pin")
    fp.add_argument("host")
    fp.add_argument("--port", type=int, default=443)
    fp.add_argument("--timeout", type=float, default=10.0)
    pol = sub.add_parser("policy", help="per-VM exception policies")
    pol.add_argument("action", choices=["list", "create", "update", "delete"])
    pol.add_argument("policy", nargs="?", help="id or name (update, delete)")
    pol.add_argument("document", nargs="?", help="JSON document (default: standard input)")
    return parser


def main(argv: list[str] | None = None, shell: Shell | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "policy" and args.action == "create" and args.policy and not args.document:
        args.document, args.policy = args.policy, None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("install-plugin", "uninstall-plugin"):
        from . import install
        try:
            return install.main(args.command, args.plugins_dir, args.site)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_OTHER
    cli = Cli(args, shell or LocalShell())
    try:
        return getattr(cli, args.command)()
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except json.JSONDecodeError as exc:
        print(f"error: document: not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (VsphereError, LookupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_OTHER


if __name__ == "__main__":
    sys.exit(main())
