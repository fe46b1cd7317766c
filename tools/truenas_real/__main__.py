"""``python -m tools.truenas_real MIDDLEWARE_SRC [API_CLIENT_SRC ZETTAREPL_SRC] [-- PYTEST ARGS]``

Builds (or reuses) the real middlewared (:mod:`.build`), builds the simulator, then runs
``pytest tests/real_truenas`` inside ``unshare -m -n`` through :mod:`.session`, and prints a
summary (pass/fail per test, set-up and run times). Stdlib only: runs with any Python 3.11+
(``TRUENAS_PYTHON`` picks the interpreter the venv is made with; TrueNAS 26.0 and master
need Python 3.13 and TrueNAS C modules Debian 12 cannot provide).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from . import build as builder

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "artifacts" / "real_truenas" / "junit.xml"


def summary(report: Path) -> list[tuple[str, str, str]]:
    """(test, outcome, first line of the failure) from pytest's junit XML."""
    rows = []
    # Our own pytest's report, written in this run.
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[kind]
                detail = (
                    (element.get("message") or "").splitlines()[0][:160] if element.get("message") else ""
                )
                break
        rows.append((name, outcome, detail))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        args, extra = args[: args.index("--")], args[args.index("--") + 1 :]
    if not 1 <= len(args) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    if os.getuid() != 0 or shutil.which("unshare") is None:
        print("truenas-real: needs root and unshare(1) (util-linux)", file=sys.stderr)
        return 2
    started = time.monotonic()
    sources = builder.Sources.from_args(args[0], *(args[1:] + [None, None])[:2])
    result = builder.build(sources)
    from tools.rig import vcsim

    vcsim.build()
    setup_s = time.monotonic() - started
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.unlink(missing_ok=True)
    pytest = [
        str(result.python),
        "-m",
        "pytest",
        "tests/real_truenas",
        "-c",
        "tests/real_truenas/pytest.ini",
        "--rootdir",
        str(ROOT),
        f"--junitxml={REPORT}",
        *extra,
    ]
    command = [
        "unshare",
        "-m",
        "-n",
        "--propagation",
        "private",
        str(result.python),
        "-m",
        "tools.truenas_real.session",
        str(result.dir),
        "--",
        *pytest,
    ]
    started = time.monotonic()
    code = subprocess.run(command, cwd=ROOT).returncode
    run_s = time.monotonic() - started
    timings_file = REPORT.parent / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    framework = result.manifest
    print(
        f"\n=== real-framework suite: TrueNAS middlewared {framework['version']} "
        f"({framework['middleware'].get('describe') or framework['middleware'].get('content')}), "
        f"api_client {framework['api_client'].get('describe')}, "
        f"zettarepl {framework['zettarepl'].get('describe')}, "
        f"Python {framework['python_version']}"
    )
    if os.environ.get("TRUENAS_REAL_SITE_FIRST"):
        print(
            "  (TRUENAS_REAL_SITE_FIRST: the project's dependencies BEFORE the framework's in middlewared's"
            " sys.path -- a diagnostic, not how the loader runs it on TrueNAS)"
        )
    try:
        rows = summary(REPORT) if REPORT.exists() else []
    except ET.ParseError:
        rows = []
        print(f"  no readable {REPORT}: see the pytest output above")
    for name, outcome, detail in rows:
        print(f"  {outcome:8} {name}{'  -- ' + detail if detail else ''}")
    counts = {k: sum(1 for r in rows if r[1] == k) for k in ("passed", "FAILED", "ERROR", "skipped")}
    print(
        f"set-up {setup_s:.1f} s (framework build {framework.get('setup_seconds', 0)} s when it was made), "
        f"session {run_s:.1f} s (rig {timings.get('rig_seconds', '?')} s, middlewared start "
        f"{timings.get('middlewared_start_seconds', '?')} s, tests {timings.get('command_seconds', '?')} s)"
    )
    print(
        f"{counts['passed']} passed, {counts['FAILED'] + counts['ERROR']} failed, {counts['skipped']} skipped"
    )
    return code if rows else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
