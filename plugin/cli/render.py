"""Human-readable tables for the command line (``--json`` prints the documents instead)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..domain.restore import Transport, parse_lun_ref


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plan_table(plan: dict[str, Any]) -> str:
    rows = []
    for vm in plan["vms"]:
        decision = vm.get("policy") or {}
        blockers = ", ".join(b["kind"] for b in vm["blockers"]) or "-"
        rows.append([vm["facts"]["name"], vm["facts"].get("provider", "vsphere"), vm["facts"]["power_state"],
                     decision.get("policy") or "(default)",
                     " > ".join(decision.get("ladder") or []) or "nothing to do",
                     decision.get("required", ""), blockers, decision.get("summary", vm["status_reason"])])
    out = [f"Plan for {plan['dataset']}{' (recursive)' if plan['recursive'] else ''}: "
           f"{plan['summary']['vms']} VMs on {plan['summary']['datastores']} datastores",
           table(["VM", "kind", "power", "policy", "ladder", "requires", "blockers", "why"], rows)]
    out += [f"warning: {w}" for w in plan["warnings"]]
    return "\n".join(out)


def report_table(report: dict[str, Any]) -> str:
    rows = []
    for vm in report["vms"]:
        quiesced = {True: "yes", False: "no", None: "-"}[vm.get("quiesced")]
        reasons = [vm["answer"]] if vm.get("answer") else []
        rows.append([vm["name"], vm.get("provider", "vsphere"), vm["policy"], vm["achieved"] or "-",
                     vm["consistency"], vm["required"], "yes" if vm["compliant"] else "NO", quiesced,
                     vm.get("undo") or "-", "; ".join([*reasons, *vm["reasons"]][:2]) or "-"])
    head = (f"Run {report['run_id']} on {report['dataset']}: snapshot {report.get('snapshot') or '-'}, "
            f"vmsynced={'Y' if report['vmsynced'] else 'N'}, begin {report['begin_seconds']:.2f} s")
    out = [head, table(["VM", "kind", "policy", "achieved", "consistency", "requires", "ok", "quiesced",
                        "undo", "reasons"], rows)]
    out += [f"endpoint {e}: {msg}" for e, msg in report.get("endpoint_errors", {}).items()]
    out += [f"left for reconcile: {x}" for x in report.get("leftovers", ())]
    return "\n".join(out)


def restore_summary(doc: dict[str, Any]) -> str:
    """One restore (``RestoreResult.to_dict``) in a few lines."""
    plan = doc["plan"]
    made = {s["step"]: s["ref"] for s in doc["steps"] if s["state"] == "done"}
    lun = parse_lun_ref(made.get("share") or "")[1] or "?"
    source = (f"the VMFS copy on LUN naa.{lun} of {plan['clone']}"
              if plan.get("transport") == Transport.VMFS else f"{plan['nas_address']}:{plan['clone']}")
    lines = [f"restore {doc['restore_id']}: {plan['vm_name']} from {plan['snapshot']} as {plan['new_name']} "
             f"({doc['state']})",
             f"  point: {plan['point']}",
             f"  on {plan['host_name']}: datastore {plan['datastore']} = {source}"]
    if doc["state"] == "restored":
        network = "connected" if plan["connect_network"] else "NICs not connected at power-on"
        power = "powered on" if "power_on" in made else "powered off"
        lines.append(f"  {power}, {network}; 'vmware-coord restore cleanup {doc['restore_id']}' "
                     "takes it away")
    lines += [f"  {note}" for note in doc.get("notes", ())]
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    return "\n".join(lines)


def restores_table(docs: Sequence[dict[str, Any]]) -> str:
    return table(["restore", "state", "VM", "from", "as", "host", "datastore"],
                 [[d["restore_id"], d["state"], d["plan"]["vm_name"], d["plan"]["snapshot"],
                   d["plan"]["new_name"], d["plan"]["host_name"], d["plan"]["datastore"]] for d in docs])
