"""zrepl's snapshot hook executor, emulated by its source (zrepl is not packaged in Debian 12).

What zrepl does per filesystem (zrepl/zrepl ``daemon/hooks/hook_exec.go`` ``Plan.Run``,
``hook_type_command.go`` ``CommandHook.Run``, ``daemon/snapper``):

- pre edges in configuration order; a failed pre of a hook with ``err_is_fatal`` stops
  there: no snapshot and no post edge at all (the code returns before the post edges,
  although it logs "only running post-edges for successful pre-edges");
- otherwise the snapshot ``zfs snapshot FS@PREFIX<UTC 20060102_150405>_000`` (never
  recursive); then, whether or not it failed, the post edges in reverse order, each only
  for a hook whose pre succeeded;
- a command hook is ``exec.CommandContext(ctx, path)``: no arguments, the daemon's
  environment plus ZREPL_HOOKTYPE (pre_snapshot | post_snapshot), ZREPL_FS, ZREPL_SNAPNAME,
  ZREPL_DRYRUN ("true" or empty) and ZREPL_TIMEOUT (whole seconds); at the timeout the
  process alone is SIGKILLed, and zrepl waits until its stdout and stderr pipes close.

``examples/zrepl/zrepl.yml`` is what the README quotes; tests read it with the dataset
``tank/vmware`` and the hook path ``/usr/local/bin/vmware-coord-hook`` replaced, and may
override a hook's ``timeout`` or ``err_is_fatal`` for a scenario. In a dry run this
emulator takes no snapshot.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "zrepl" / "zrepl.yml"
DATASET_PLACEHOLDER = "tank/vmware"
HOOK_PLACEHOLDER = "/usr/local/bin/vmware-coord-hook"
DEFAULT_TIMEOUT_S = 30.0   # zrepl's default hook timeout


# --- the configuration ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CommandHook:
    path: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    err_is_fatal: bool = False
    filesystems: Mapping[str, bool] | None = None   # None: every filesystem of the job


@dataclasses.dataclass(frozen=True)
class SnapJob:
    name: str
    filesystems: Mapping[str, bool]
    prefix: str
    hooks: tuple[CommandHook, ...]


def load_job(dataset: str, hook: str, example: Path = EXAMPLE, **overrides: Any) -> SnapJob:
    """The example's first job for ``dataset`` and ``hook``; ``overrides`` replace fields of
    every command hook (``timeout_s``, ``err_is_fatal``)."""
    text = example.read_text()
    if DATASET_PLACEHOLDER not in text or HOOK_PLACEHOLDER not in text:
        raise ValueError(f"{example} must name {DATASET_PLACEHOLDER} and {HOOK_PLACEHOLDER}")
    document = parse_yaml(text.replace(HOOK_PLACEHOLDER, hook).replace(DATASET_PLACEHOLDER, dataset))
    job = document["jobs"][0]
    snapshotting = job["snapshotting"]
    if snapshotting["type"] not in ("periodic", "cron"):
        raise ValueError(f"{example}: snapshotting type {snapshotting['type']!r} runs no hooks")
    hooks = []
    for entry in snapshotting.get("hooks") or []:
        if entry["type"] != "command":
            raise ValueError(f"{example}: only command hooks are emulated, not {entry['type']!r}")
        if not str(entry["path"]).startswith("/"):
            raise ValueError(f"{example}: a command hook's path must be absolute")
        command = CommandHook(path=entry["path"], timeout_s=parse_duration(str(entry.get("timeout", "30s"))),
                              err_is_fatal=bool(entry.get("err_is_fatal", False)),
                              filesystems=entry.get("filesystems"))
        hooks.append(dataclasses.replace(command, **overrides))
    return SnapJob(name=job["name"], filesystems=job["filesystems"], prefix=snapshotting["prefix"],
                   hooks=tuple(hooks))


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the units a zrepl configuration uses."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(n) * units[u] for n, u in parts)


def matches(filesystems: Mapping[str, bool] | None, fs: str) -> bool:
    """zrepl's filesystem filter: exact names, ``name<`` for a subtree; the longest match wins."""
    if filesystems is None:
        return True
    best, verdict = -1, False
    for pattern, included in filesystems.items():
        subtree = pattern.endswith("<")
        base = pattern.rstrip("<")
        hit = fs == base or (subtree and (base == "" or fs.startswith(base + "/")))
        if hit and len(base) > best:
            best, verdict = len(base), bool(included)
    return verdict


# --- running a job ----------------------------------------------------------------------


@dataclasses.dataclass
class HookRun:
    edge: str                  # pre_snapshot | post_snapshot
    env: dict[str, str]        # the ZREPL_ variables it was given
    returncode: int | None     # None: killed at the timeout
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:
        how = "killed at the timeout" if self.returncode is None else f"exit {self.returncode}"
        return f"{self.edge}: {how} after {self.seconds:.1f}s\n{self.output}"


@dataclasses.dataclass
class FilesystemRun:
    fs: str
    snapname: str
    pre: list[HookRun]
    snapshot_attempted: bool
    snapshot_error: str | None
    post: list[HookRun]

    def __str__(self) -> str:
        lines = [f"{self.fs}@{self.snapname}:"] + [str(h) for h in self.pre]
        lines.append("snapshot: " + ("not attempted" if not self.snapshot_attempted else
                                     self.snapshot_error or "taken"))
        return "\n".join(lines + [str(h) for h in self.post])

    __repr__ = __str__   # what a failed assertion shows


def snapname(prefix: str, now: datetime | None = None) -> str:
    # Go's layout "20060102_150405_000": "_000" is literal text there, not milliseconds.
    return prefix + (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S") + "_000"


Watch = Callable[[str, subprocess.Popen], None]


def run_hook(hook: CommandHook, edge: str, fs: str, name: str, dry_run: bool,
             env: Mapping[str, str], watch: Watch | None = None) -> HookRun:
    """``watch(edge, process)``, if given, is called as the hook starts and every 20 ms while
    it runs (a test's probe, in this thread: nothing else changes when zrepl kills it)."""
    zrepl_env = {"ZREPL_TIMEOUT": f"{math.floor(hook.timeout_s):.0f}", "ZREPL_HOOKTYPE": edge,
                 "ZREPL_DRYRUN": "true" if dry_run else "", "ZREPL_FS": fs, "ZREPL_SNAPNAME": name}
    started = time.monotonic()
    deadline = started + hook.timeout_s
    proc = subprocess.Popen([hook.path], env={**env, **zrepl_env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code: int | None = None
    while True:
        if watch is not None:
            watch(edge, proc)
        remaining = deadline - time.monotonic()
        try:
            out, err = proc.communicate(timeout=max(0.0, min(remaining, 0.02) if watch else remaining))
            code = proc.returncode
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue   # communicate may be called again; it keeps what it has read
            proc.kill()                 # Process.Kill: SIGKILL to the hook alone
            out, err = proc.communicate()   # Wait also waits for its pipes to close
            break
    return HookRun(edge, zrepl_env, code, out + err, time.monotonic() - started)


def snapshot_filesystem(job: SnapJob, fs: str, env: Mapping[str, str] | None = None,
                        dry_run: bool = False, name: str | None = None,
                        watch: Watch | None = None) -> FilesystemRun:
    """One filesystem's hook plan, as zrepl's snapper runs it. ``env`` is the daemon's
    environment (its PATH also finds the ``zfs`` zrepl runs)."""
    if not matches(job.filesystems, fs):
        raise ValueError(f"{fs} is not one of the job's filesystems")
    environ = dict(os.environ if env is None else env)
    name = name or snapname(job.prefix)
    hooks = [h for h in job.hooks if matches(h.filesystems, fs)]
    run = FilesystemRun(fs, name, [], False, None, [])
    for hook in hooks:
        report = run_hook(hook, "pre_snapshot", fs, name, dry_run, environ, watch)
        run.pre.append(report)
        if not report.ok and hook.err_is_fatal:
            return run   # no snapshot, and no post edge for any hook
    if not dry_run:
        run.snapshot_attempted = True
        proc = subprocess.run(["zfs", "snapshot", f"{fs}@{name}"], capture_output=True, text=True,
                              env=environ, timeout=60)
        if proc.returncode != 0:
            run.snapshot_error = proc.stderr.strip() or f"zfs exited {proc.returncode}"
    for hook, pre in reversed(list(zip(hooks, run.pre, strict=True))):
        if pre.ok:
            run.post.append(run_hook(hook, "post_snapshot", fs, name, dry_run, environ, watch))
    return run


# --- the YAML subset the example uses ---------------------------------------------------


def parse_yaml(text: str) -> Any:
    """Block mappings and sequences, scalars, quoted keys and values, comments: the subset
    of YAML zrepl's example configuration is written in (PyYAML is not a dependency)."""
    lines: list[tuple[int, str]] = []
    for raw in text.splitlines():
        content = _without_comment(raw).rstrip()
        if content.strip():
            lines.append((len(content) - len(content.lstrip(" ")), content.strip()))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise ValueError(f"unexpected indentation at {lines[end][1]!r}")
    return value


def _without_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            rest = lines[i][1][1:].lstrip()
            if not rest:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            elif _split_key(rest) is None:
                value, i = _scalar(rest), i + 1
            else:   # "- key: value": a mapping whose first line starts after the dash
                lines[i] = (indent + 2, rest)
                value, i = _block(lines, i, indent + 2)
            items.append(value)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        split = _split_key(lines[i][1])
        if split is None:
            raise ValueError(f"expected 'key: value' at {lines[i][1]!r}")
        key, rest = split
        if rest:
            mapping[key], i = _scalar(rest), i + 1
        elif i + 1 < len(lines) and lines[i + 1][0] > indent:
            mapping[key], i = _block(lines, i + 1, lines[i + 1][0])
        else:
            mapping[key], i = None, i + 1
    return mapping, i


def _split_key(content: str) -> tuple[str, str] | None:
    if content[:1] in "\"'":
        close = content.find(content[0], 1)
        if close < 0 or not content[close + 1:].startswith(":"):
            return None
        return content[1:close], content[close + 2:].strip()
    match = re.match(r"^([^:\s][^:]*):(?:\s+(.*)|$)", content)
    return (match[1].strip(), (match[2] or "").strip()) if match else None


def _scalar(text: str) -> Any:
    if text[:1] in "\"'" and text[-1:] == text[:1] and len(text) >= 2:
        return text[1:-1]
    if text.startswith("{") and text.endswith("}"):   # a flow mapping such as {"tank/vm<": true}
        inner = text[1:-1].strip()
        return dict(_flow_pair(p) for p in inner.split(",") if p.strip()) if inner else {}
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _flow_pair(pair: str) -> tuple[str, Any]:
    split = _split_key(pair.strip())
    if split is None:
        raise ValueError(f"expected 'key: value' in {pair!r}")
    return split[0], _scalar(split[1])
