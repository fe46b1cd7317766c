"""Fuzzing ``vmware-coord`` in-process: its configuration file, policy documents and argv.

Whatever it is given, ``main(argv)`` either does its work or refuses with exit 2 and
``error: <field>: <problem>`` (or argparse's own ``error: argument <name>: ...``) naming
what was wrong: never a traceback, never an "unexpected" failure, and a refused input
leaves the policy store exactly as it was.

Nothing reaches beyond 127.0.0.1: the configured endpoint is 127.0.0.1 port 1 (refused at
once), ZFS is a fake Shell handed to ``main(argv, shell=...)``, and PATH holds no ``zfs``
for the code that takes no Shell (doctor). Scheduler variables are removed from the
environment, so no hook gets past reading its call, and os._exit (how a hook ends its
process) is made an ordinary exit all the same.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import sqlite3
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from truenas_vmware_coord.cli.main import main
from truenas_vmware_coord.zfs.shell import ShellError

# Derandomized: CI sees the same examples every run. No shrinking: a failure is reported as
# drawn (reproducible all the same), and a failing run stays as quick as a passing one.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                phases=(Phase.explicit, Phase.reuse, Phase.generate),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PASSWORD_ENV = "FUZZ_VCENTER_PASSWORD"
DATASET = "tank/vm"
FINGERPRINT = ":".join(["AB"] * 32)
DEEP = 100_000                   # beyond any recursion limit
HUGE = "9" * 5000                # beyond Python's 4300-digit int conversion limit

ARGPARSE = re.compile(r"^error: (argument (?P<name>[^:]+): \S.*|the following arguments are required: \S.*"
                      r"|unrecognized arguments: .*|one of the arguments \S.*)$")
PROBLEMS = re.compile(r"^error: (?P<count>\d+) problems:$")
FIELD = re.compile(r"^(?P<field>[^\s:][^:]*): (?P<problem>\S.*)$")


def valid_config(state_dir: Path) -> dict[str, Any]:
    """A configuration that sets every field the schema has, each to a valid value."""
    return {
        "state_dir": str(state_dir),
        "nas": {"addresses": ["192.0.2.5", "nas.example.com"],
                "iscsi_extents": {"tank/lun0": ["naa.6589cfc000000a1b2c3d4e5f60718293"]}},
        "endpoints": {"vc1": {
            "connection": {"host": "127.0.0.1", "port": 1, "username": "svc@vsphere.local",
                           "tls": {"sha256_fingerprint": FINGERPRINT}, "connect_timeout_seconds": 2,
                           "read_timeout_seconds": 5, "limits": {"global": 4}},
            "password_env": PASSWORD_ENV}},
        "mappings": [{"id": "m1", "endpoint": "vc1", "datastore": "ds1", "dataset": DATASET}],
        "engine": {"limits": {"global": 8, "per_host": 4, "per_datastore": 4}, "begin_deadline_seconds": 30,
                   "vm_deadline_seconds": 20, "end_deadline_seconds": 60,
                   "default_policy": {"ladder": ["quiesce", "crash"]}, "reconcile_interval_seconds": 900,
                   "marker_max_age_seconds": 3600, "journal_retention": {"days": 7, "runs": 100}},
        "hooks": {"timeout_seconds": 30, "recursive": [DATASET], "strict": False, "post_wait_seconds": 60},
    }


class FakeZfs:
    """The ``zfs`` commands the CLI runs, answered for one pool ``tank`` (no process is run)."""

    def __init__(self) -> None:
        self.datasets = {"tank": "/mnt/tank", DATASET: "/mnt/tank/vm",
                         f"{DATASET}/child": "/mnt/tank/vm/child"}
        self.snapshots: list[str] = []

    def run(self, args: list[str]) -> str:
        if args[:2] == ["zfs", "list"]:
            if "snapshot" in args:
                root = args[-1]
                return "".join(f"{s}\n" for s in self.snapshots if s.split("@")[0].startswith(root))
            if "name,mountpoint" in args:
                return "".join(f"{d}\t{m}\n" for d, m in self.datasets.items())
            root = args[-1]
            if root not in self.datasets:
                raise ShellError(args, 1, f"cannot open '{root}': dataset does not exist")
            return "".join(f"{d}\n" for d in self.datasets if d == root or d.startswith(f"{root}/"))
        if args[:2] == ["zfs", "snapshot"]:
            if args[-1] in self.snapshots:
                raise ShellError(args, 1, f"cannot create snapshot '{args[-1]}': dataset already exists")
            self.snapshots.append(args[-1])
            return ""
        if args[:2] in (["zfs", "set"], ["zfs", "get"]):
            return ""
        raise ShellError(args, 1, "unknown command")


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.config = root / "config.json"
        self.config.write_text(json.dumps(valid_config(self.state)))
        self.plugins = root / "plugins"
        self.plugins.mkdir()
        self.empty_bin = root / "bin"
        self.empty_bin.mkdir()
        self._n = 0

    def path(self, suffix: str) -> Path:
        self._n += 1
        return self.root / f"doc{self._n}{suffix}"

    def rows(self) -> list[tuple]:
        """The policy store as stored (read-only: reading it must not create it)."""
        db = self.state / "policies.sqlite"
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT id, name, priority, document FROM vmware_coord_policy "
                                "ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("cli-fuzz"))


@pytest.fixture
def cli(workspace: Workspace, capsys, monkeypatch) -> Iterator[Any]:
    monkeypatch.setenv(PASSWORD_ENV, "not-a-secret")
    monkeypatch.setenv("PATH", str(workspace.empty_bin))
    for name in list(os.environ):
        if name.startswith(("SANOID_", "ZREPL_")) or name == "VMWARE_COORD_CONFIG":
            monkeypatch.delenv(name)

    def leave(code: int) -> None:
        raise SystemExit(code)

    # A hook ends its process with os._exit (its scheduler's timeout): here that would end
    # pytest, so it becomes an ordinary exit.
    monkeypatch.setattr(os, "_exit", leave)

    def run(argv: list[str], stdin: bytes = b"", config: Path | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(["-c", str(config or workspace.config), *argv], shell=FakeZfs())
        except SystemExit as exc:   # argparse's own exits, and os._exit above
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, err
        assert "error: unexpected" not in err, err
        assert code in (0, 1, 2, 3, 4), (code, err)
        return code, out, err

    yield run


def refusal(err: str) -> list[str]:
    """The fields an exit-2 message names; fails unless it has the documented form: one line
    per problem, so no control character of the input may reach the terminal raw (a CR or an
    escape sequence in a key would rewrite what the user reads)."""
    raw = sorted({c for c in err if c != "\n" and unicodedata.category(c) in CONTROL})
    assert not raw, f"control characters {raw} printed raw in:\n{err!r}"
    lines = err.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    assert first is not None, f"no 'error: ' line in:\n{err}"
    line = lines[first]
    if match := ARGPARSE.match(line):
        return [f"argument {match['name']}" if match["name"] else line[len("error: "):]]
    if match := PROBLEMS.match(line):
        details = lines[first + 1:first + 1 + int(match["count"])]
        found = [FIELD.match(d.removeprefix("  ")) for d in details if d.startswith("  ")]
        assert len(found) == int(match["count"]) and all(found), err
        return [m["field"] for m in found if m]
    match = FIELD.match(line[len("error: "):])
    assert match, f"not 'error: <field>: <problem>':\n{err}"
    return [match["field"]]


def assert_refused(code: int, err: str, *prefixes: str) -> list[str]:
    assert code == 2, err
    fields = refusal(err)
    if prefixes:
        assert all(f.startswith(prefixes) for f in fields), (fields, err)
    return fields


# --- documents ---------------------------------------------------------------------------------

# No control characters in generated text: what they do to a message is the business of
# test_refusals_never_echo_control_characters, and here they would hide every other finding.
CONTROL = ("Cc", "Zl", "Zp")
text = st.text(st.characters(blacklist_categories=("Cs", *CONTROL)), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)


def paths(document: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a document: object keys and list indices, outermost first."""
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            yield from paths(value, (*prefix, i))


def replaced(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(document)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return out


def dropped(document: Any, path: tuple) -> Any:
    out = copy.deepcopy(document)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return out


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """A valid document with a few things changed: keys dropped, values replaced (by anything,
    by deep nesting, by huge numbers), unknown keys added."""
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(document))))
        action = draw(st.sampled_from(["drop", "replace", "add", "deep", "huge"]))
        if action == "drop" and where:
            document = dropped(document, where)
        elif action == "add" and isinstance(_at(document, where), dict):
            document = replaced(document, (*where, draw(text)), draw(json_values))
        elif action == "deep":
            document = replaced(document, where, nested(draw(st.integers(50, 400))))
        elif action == "huge":
            document = replaced(document, where, draw(st.sampled_from(
                [10**30, -10**30, 2**63, math.inf, -math.inf, math.nan, 1e308, -0.0])))
        else:
            document = replaced(document, where, draw(json_values))
    return document


def _at(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value)   # a TOML basic string for what this suite generates
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(document: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in document.items())


def _toml_safe(value: Any) -> bool:
    """TOML has no null, and this small writer only escapes printable ASCII safely."""
    if value is None:
        return False
    if isinstance(value, str):
        return all(" " <= c <= "~" for c in value)
    if isinstance(value, list):
        return all(_toml_safe(v) for v in value)
    if isinstance(value, dict):
        return all(_toml_safe(k) and _toml_safe(v) for k, v in value.items())
    return True


@st.composite
def config_files(draw: st.DrawFn, base: dict[str, Any]) -> tuple[str, bytes]:
    """(suffix, bytes) of a configuration file: mutated or arbitrary documents as JSON or
    TOML, damaged text, random bytes, text that is not UTF-8, deep nesting, huge numbers."""
    kind = draw(st.sampled_from(["mutated", "mutated", "arbitrary", "damaged", "bytes", "not utf-8",
                                 "deep", "huge"]))
    if kind == "bytes":
        return draw(st.sampled_from([".json", ".toml"])), draw(st.binary(max_size=300))
    if kind == "deep":
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        if draw(st.booleans()):
            return ".json", (f'{{"state_dir": {opener * DEEP}1{closer * DEEP}}}').encode()
        return ".toml", ("state_dir = " + "[" * DEEP + "1" + "]" * DEEP + "\n").encode()
    if kind == "huge":
        field = draw(st.sampled_from(["port", "connect_timeout_seconds"]))
        document = copy.deepcopy(base)
        document["endpoints"]["vc1"]["connection"][field] = 0   # placeholder, replaced as text
        if draw(st.booleans()):
            return ".json", json.dumps(document).replace(f'"{field}": 0', f'"{field}": {HUGE}').encode()
        head = toml_document({k: v for k, v in document.items() if k != "endpoints"})
        return ".toml", (head + f"[endpoints.vc1]\npassword_env = \"{PASSWORD_ENV}\"\n"
                         f"[endpoints.vc1.connection]\nhost = \"127.0.0.1\"\nusername = \"u\"\n"
                         f"{field} = {HUGE}\n").encode()
    document = draw(mutated(base)) if kind in ("mutated", "damaged", "not utf-8") else draw(json_values)
    as_toml = isinstance(document, dict) and _toml_safe(document) and draw(st.booleans())
    rendered = toml_document(document) if as_toml else json.dumps(document)
    suffix = ".toml" if as_toml else ".json"
    data = rendered.encode()
    if kind == "damaged":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=8)) + data[cut + draw(st.integers(0, 8)):]
    elif kind == "not utf-8":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"])) \
            + data[cut:]
    return suffix, data


# --- the configuration -------------------------------------------------------------------------


def _check_config_outcome(code: int, err: str) -> None:
    if code == 2:
        assert_refused(code, err, "config")
    else:   # accepted; `runs` only reads the journal, which may be unreadable where it points
        assert code == 0 or (code == 4 and "journal" in err), err


@FUZZ
@given(data=st.data())
def test_any_configuration_is_used_or_refused_by_field(workspace: Workspace, cli, data) -> None:
    suffix, content = data.draw(config_files(valid_config(workspace.state)))
    path = workspace.path(suffix)
    path.write_bytes(content)
    before = workspace.rows()
    code, _, err = cli(["runs"], config=path)
    _check_config_outcome(code, err)
    assert workspace.rows() == before


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}[type(value)]


WRONG = [None, True, 7, -1, 1.5, "text", [], {}, ["x"], {"x": 1}]
NULLABLE = {("endpoints", "vc1", "connection", "tls", "sha256_fingerprint"),
            ("endpoints", "vc1", "connection", "limits", "global")}
EVERY_FIELD = [p for p in paths(valid_config(Path("/state"))) if p]


@pytest.mark.parametrize("where", EVERY_FIELD, ids=lambda p: ".".join(map(str, p)))
def test_a_wrong_type_in_any_field_names_that_field(workspace: Workspace, cli, where: tuple) -> None:
    base = valid_config(workspace.state)
    field = ".".join(["config", *map(str, where)])
    original = _kind(_at(base, where))
    for value in WRONG:
        kind = _kind(value)
        if kind == original or (kind == "null" and where in NULLABLE) or \
                (original == "number" and kind == "integer"):
            continue
        path = workspace.path(".json")
        path.write_text(json.dumps(replaced(base, where, value)))
        code, _, err = cli(["runs"], config=path)
        fields = assert_refused(code, err, "config")
        assert any(f == field or f.startswith(f"{field}.") for f in fields), (value, fields, err)


def _fifo(root: Path) -> Path:
    path = root / "fifo.toml"
    if not path.exists():
        os.mkfifo(path)
    return path


def _loop(root: Path) -> Path:
    path = root / "loop.toml"
    if not path.is_symlink():
        path.symlink_to(path)
    return path


@pytest.mark.parametrize(("make", "problem"), [
    (lambda root: root, "is not a regular file"),
    (lambda root: Path("/dev/zero"), "is not a regular file"),
    (_fifo, "is not a regular file"),
    (_loop, "does not exist"),
    (lambda root: root / "missing.toml", "does not exist"),
    (lambda root: _written(root / "big.toml", b"# " + b"x" * (1 << 20) + b"\n"), "larger than"),
    (lambda root: _written(root / "empty.toml", b""), "endpoints"),
    (lambda root: _written(root / "latin1.toml", 'state_dir = "/var/lib/caf\xe9"\n'.encode("latin-1")),
     "not UTF-8"),
    (lambda root: _written(root / "deep.json", b"[" * DEEP + b"]" * DEEP), "nested too deeply"),
    (lambda root: _written(root / "huge.json", f'{{"state_dir": {HUGE}}}'.encode()), "too large"),
    (lambda root: _written(root / "nan.toml", b"endpoints = {}\nmappings = []\nstate_dir = nan\n"),
     "config.state_dir"),
])
def test_a_configuration_path_that_is_no_document_is_refused(workspace: Workspace, cli, make,
                                                              problem: str) -> None:
    code, _, err = cli(["runs"], config=make(workspace.root))
    assert_refused(code, err, "config")
    assert problem in err, err


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- policy documents --------------------------------------------------------------------------

LADDERS = [["quiesce", "crash"], ["memory", "crash"], ["power_off", "crash"], ["suspend"], ["crash"],
           ["exclude"], ["quiesce", "power_off", "crash"]]
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _.:-]{0,15}", fullmatch=True)
valid_policies = st.fixed_dictionaries(
    {"name": names, "priority": st.integers(1, 10_000), "ladder": st.sampled_from(LADDERS)},
    optional={"enabled": st.booleans(), "description": st.text(max_size=30),
              "match": st.fixed_dictionaries({}, optional={
                  "name_glob": st.sampled_from(["*-db", "web?"]),
                  "guest_family": st.sampled_from(["linux", "windows"])}),
              "options": st.fixed_dictionaries({}, optional={"shutdown_timeout_seconds": st.integers(10, 600),
                                                             "hard_power_off": st.booleans()})})
BASE_POLICY = {"name": "base", "priority": 1, "ladder": ["power_off", "crash"],
               "options": {"shutdown_timeout_seconds": 20}, "match": {"name_glob": "*-db"}}


@st.composite
def policy_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "arbitrary", "text", "not utf-8", "deep",
                                 "huge"]))
    if kind == "text":
        return draw(text).encode()
    if kind == "not utf-8":
        return b'{"name": "caf' + draw(st.sampled_from([b"\xe9", b"\xff", b"\xed\xa0\x80"])) + b'"}'
    if kind == "deep":
        return b'{"name": "x", "match": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    if kind == "huge":
        return f'{{"name": "x", "priority": {HUGE}, "ladder": ["crash"]}}'.encode()
    document = draw(valid_policies)
    if kind == "mutated":
        document = draw(mutated(document))
    elif kind == "arbitrary":
        document = draw(json_values)
    return json.dumps(document).encode()


def _ensure_base(cli: Any, workspace: Workspace) -> None:
    """A stored policy with id 1 for updates to work on (one a test deleted is put back)."""
    db = workspace.state / "policies.sqlite"
    if not db.exists():
        code, _, err = cli(["policy", "create", json.dumps(BASE_POLICY)])
        assert code == 0, err
    if not any(row[0] == 1 for row in workspace.rows()):
        # Ids are never reused by the store: the row goes back with its id, directly.
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("DELETE FROM vmware_coord_policy WHERE priority = 1 OR name = 'base' COLLATE NOCASE")
            conn.execute("INSERT INTO vmware_coord_policy (id, name, priority, document) VALUES (1, ?, 1, ?)",
                         ("base", json.dumps(BASE_POLICY, sort_keys=True)))


@FUZZ
@given(document=policy_inputs(), how=st.sampled_from(["create-arg", "create-stdin", "update-arg",
                                                      "update-stdin"]))
# Found by this test: a key with ':' or white space in it, named as if it were a field.
@example(document=b'{"name": "p", "priority": 5, "ladder": ["crash"], "a:b": 1, "c d": 2}',
         how="create-stdin")
def test_any_policy_document_is_saved_or_refused_by_field(workspace: Workspace, cli, document: bytes,
                                                          how: str) -> None:
    _ensure_base(cli, workspace)
    action, source = how.split("-")
    argv = ["policy", action, *(["1"] if action == "update" else [])]
    as_text = document.decode("utf-8", "surrogateescape")
    # As one argument where a shell could hand it over as one (and argparse would not take
    # it for an option); otherwise on standard input.
    if source == "arg" and not any(0xDC80 <= ord(c) <= 0xDCFF for c in as_text) and "\0" not in as_text \
            and not as_text.startswith("-"):
        argv.append(as_text)
        stdin = b""
    else:
        stdin = document
    before = workspace.rows()
    code, out, err = cli(argv, stdin=stdin)
    after = workspace.rows()
    if code == 0:
        assert re.fullmatch(r"policy \d+ '.*' saved\n", out, re.S), out
        assert len(after) == len(before) + (action == "create"), (before, after)
    else:
        assert_refused(code, err, "policy", "document")
        assert after == before


# --- arguments ---------------------------------------------------------------------------------

NUMBERS = ["", "-1", "0", "1e309", "nan", "NaN", "inf", "-inf", "+inf", "1" * 30, "0x10", "abc", "1.5",
           "65536", "3601", " 5", "-0", "１２", "1_000"]
DATASETS = ["", "-tank", "-r", "tank@x", f"{DATASET}@snap", "tank+x", "tank//vm", "tank/vm/", "/tank",
            "tank/" + "a" * 300, "tank/#b", "tank/./a", "mirror/a", "1tank", DATASET, f"{DATASET}/child",
            "tank/absent", "tank/vm x"]
SNAPNAMES = ["a+b", "a@b", "x" * 300, "a/b", "", " ", "ok-name", "vmware-coord-1", "é", "a#b", "..", "."]
POLICY_REFS = ["", "-1", "1" * 30, "abc", "0", "1", "base", "9223372036854775808", "１", " 1"]
junk = st.text(st.characters(blacklist_categories=("Cs", *CONTROL)), max_size=12)


def _pairs(draw: st.DrawFn, options: dict[str, st.SearchStrategy[str]]) -> list[str]:
    out: list[str] = []
    if not options:
        return out
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=3)):
        out += [flag, draw(options[flag])] if options[flag] is not None else [flag]
    return out


@st.composite
def argvs(draw: st.DrawFn, workspace: Workspace) -> list[str]:
    head = draw(st.lists(st.sampled_from(["--json", "--progress", "-v"]), max_size=2, unique=True))
    command = draw(st.sampled_from(["plan", "snapshot", "hook", "reconcile", "doctor", "report", "runs",
                                    "fingerprint", "policy", "install-plugin", "uninstall-plugin", "nope"]))
    # Mostly a dataset that exists, so that the checks after argparse's are reached too.
    values = st.just(DATASET) | st.sampled_from(DATASETS) | junk
    numbers = st.sampled_from(NUMBERS) | junk
    flags: dict[str, Any] = {}
    body: list[str] = []
    if command in ("plan", "snapshot"):
        if draw(st.booleans()):
            body.append("--")   # so a dataset starting with '-' reaches the dataset check
        body.append(draw(values))
        flags = {"-r": None, "--recursive": None, "-x": values, "--exclude": values}
        if command == "snapshot":
            flags |= {"-n": st.sampled_from(SNAPNAMES) | junk, "--name": st.sampled_from(SNAPNAMES) | junk}
        if body[0] == "--":   # options cannot follow a dataset given after "--"
            return [*head, command, *_pairs(draw, flags), *body]
    elif command == "hook":
        body = draw(st.lists(st.sampled_from(["pre", "post", "both"]) | junk, max_size=1))
        flags = {"--recursive": None, "--strict": None, "--timeout": numbers}
    elif command == "reconcile":
        flags = {"--settle": None}
    elif command == "doctor":
        flags = {"--connect": None}
    elif command == "report":
        body = [draw(st.sampled_from([f"{DATASET}@x", "0123456789abcdef", "", "-1"]) | junk)]
    elif command == "runs":
        flags = {"--limit": numbers}
    elif command == "fingerprint":
        # Only 127.0.0.1, and a port number that parses is always 1: nothing else is dialled.
        body = ["127.0.0.1"]
        flags = {"--port": st.sampled_from([*NUMBERS, "1"]), "--timeout": st.sampled_from([*NUMBERS, "0.5"])}
    elif command == "policy":
        action = draw(st.sampled_from(["list", "create", "update", "delete", "purge"]))
        body = [action, *draw(st.lists(st.sampled_from(POLICY_REFS) | junk, max_size=1))]
        if action in ("create", "update") and draw(st.booleans()):
            body.append(draw(st.sampled_from(['{"priority": 2}', '{"name": "n", "priority": 3, "ladder": '
                                              '["crash"]}', "{", "[]", '{"id": 5}'])))
    if draw(st.integers(0, 4)) == 0:
        body.append(draw(junk))   # a stray token
    argv = [*head, command, *body, *_pairs(draw, flags)]
    if command in ("install-plugin", "uninstall-plugin"):
        # Last, so that no abbreviation a stray token happens to be can point it elsewhere.
        argv += ["--plugins-dir", str(workspace.plugins)]
    return argv


def _writes_policies(argv: list[str], code: int) -> bool:
    return code == 0 and "policy" in argv and any(a in argv for a in ("create", "update", "delete"))


@FUZZ
@given(data=st.data())
def test_any_arguments_run_or_are_refused_by_field(workspace: Workspace, cli, data) -> None:
    argv = data.draw(argvs(workspace))
    before = workspace.rows()
    code, _, err = cli(argv)
    if code == 2:
        refusal(err)
    if not _writes_policies(argv, code):
        assert workspace.rows() == before, argv


@pytest.mark.parametrize(("argv", "field"), [
    (["policy", "delete", ""], "policy"),
    (["policy", "delete", "-1"], "policy"),
    (["policy", "delete", "1" * 30], "policy"),
    (["policy", "delete", "abc"], "policy"),
    (["policy", "update", "", '{"priority": 2}'], "policy"),
    (["policy", "update", "-1", '{"priority": 2}'], "policy"),
    (["policy", "update", "1" * 30, '{"priority": 2}'], "policy"),
    (["policy", "update", "abc", '{"priority": 2}'], "policy"),
    (["policy", "update", "1", '{"priority": -1}'], "policy.priority"),
    (["policy", "update", "1", '{"priority": 1e400}'], "policy.priority"),
    (["policy", "create", '{"name": "x", "priority": NaN, "ladder": ["crash"]}'], "policy.priority"),
    *((["hook", "pre", "--timeout", v], "argument --timeout") for v in ("-1", "nan", "inf", "-inf")),
    *((["fingerprint", "127.0.0.1", "--port", v], "argument --port")
      for v in ("-1", "nan", "inf", "0", "65536")),
    *((["fingerprint", "127.0.0.1", "--timeout", v], "argument --timeout") for v in ("-1", "nan", "inf")),
    (["runs", "--limit", "-1"], "argument --limit"),
    (["runs", "--limit", "nan"], "argument --limit"),
    (["plan", "--", "-tank"], "argument dataset"),
    (["snapshot", "--", f"-{DATASET}"], "argument dataset"),
    (["plan", f"{DATASET}@snap"], "argument dataset"),
    (["plan", "tank+x"], "argument dataset"),
    (["snapshot", "tank//vm"], "argument dataset"),
    (["snapshot", DATASET, "-x", "tank//vm/child"], "argument -x/--exclude"),
    (["snapshot", DATASET, "--name", "a+b"], "--name"),
    (["snapshot", DATASET, "--name", "a@b"], "--name"),
    (["snapshot", DATASET, "--name", "x" * 300], "--name"),
    (["snapshot", "tank/absent", "--name", "fine"], "dataset"),
])
def test_bad_arguments_name_what_is_wrong(workspace: Workspace, cli, argv: list[str], field: str) -> None:
    _ensure_base(cli, workspace)
    before = workspace.rows()
    code, _, err = cli(argv)
    assert field in assert_refused(code, err), err
    assert workspace.rows() == before


@pytest.mark.parametrize(("argv", "stdin", "raw"), [
    (["policy", "create"], b'{"name": "x", "priority": 5, "ladder": ["crash"], "\\r": 1}', "\r"),
    (["policy", "create"], b'{"name": "x", "priority": 5, "ladder": ["crash"], "\\n": 1}', "policy.\n"),
    (["policy", "create"], b'{"name": "x", "priority": 5, "ladder": ["crash"], "\\u001b[2J": 1}', "\x1b"),
    (["policy", "create"], b'{"name": "x", "priority": 5, "ladder": ["crash"], "match": {"\\u0007": 1}}',
     "\x07"),
    (["plan", "tank/\x1b[2J"], b"", "\x1b"),
    (["snapshot", DATASET, "--name", "a\rb"], b"", "\r"),
    (["snapshot", DATASET, "-x", "tank/vm/\nchild"], b"", "/\nchild"),
], ids=["policy key CR", "policy key LF", "policy key ESC", "match key BEL", "dataset ESC", "--name CR",
        "--exclude LF"])
def test_refusals_never_echo_control_characters(workspace: Workspace, cli, argv: list[str], stdin: bytes,
                                                raw: str) -> None:
    """A key or a value with a CR, a newline or an escape sequence is shown escaped: raw, it
    would split the message or rewrite the user's terminal (ESC [2J clears it)."""
    code, _, err = cli(argv, stdin=stdin)
    assert code == 2, err
    assert raw not in err, f"printed raw: {err!r}"
    assert_refused(code, err)
