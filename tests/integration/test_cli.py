"""The ``vmware-coord`` command: its configuration errors, hooks, reports and exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_env import CLI, CliEnv
from engine_env import EngineEnv
from jsonschema import Draft202012Validator
from truenas_vmware_coord import schemas


@pytest.fixture
def cli(sim, zfs_pool, module_si, tmp_path) -> CliEnv:
    env = EngineEnv.create(sim, zfs_pool, module_si, tmp_path)
    env.vm("app")
    return CliEnv.create(env, tmp_path)


def _bad_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return subprocess.run([CLI, "-c", str(path), "runs"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("text", "field", "problem"), [
    ('[endpoints.a.connection]\nhost = "h"\nusername = "u"\n[[mappings]]\nendpoint = "b"\n'
     'datastore = "d"\ndataset = "tank/d"\n', "config.mappings.0.endpoint", "no endpoint named 'b'"),
    ('colour = "blue"\n[endpoints.a.connection]\nhost = "h"\nusername = "u"\nmappings = []\n',
     "config.colour", "unknown field"),
    ('mappings = []\n[endpoints.a.connection]\nhost = "h"\nusername = "u"\n'
     'tls = { sha256_fingerprint = "not-hex" }\n',
     "config.endpoints.a.connection.tls.sha256_fingerprint", "SHA-256"),
    ('mappings = []\n[endpoints.a.connection]\nhost = "h"\nusername = "u"\n[engine]\n'
     'vm_deadline_seconds = 500\nbegin_deadline_seconds = 60\n', "config.engine.vm_deadline_seconds",
     "must not be longer"),
    ("this is [ not toml", "config", "not valid TOML"),
    ('mappings = []\n[endpoints.a.connection]\nhost = "h"\nusername = "u"\n'
     'tls = { skip_verification = true, sha256_fingerprint = "' + "AB" * 32 + '" }\n',
     "config.endpoints.a.connection.tls", "contradicts a pinned sha256_fingerprint"),
])
def test_bad_configuration_names_the_field_without_a_traceback(tmp_path, text, field, problem):
    proc = _bad_config(tmp_path, text)
    assert proc.returncode == 2
    assert field in proc.stderr and problem in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_password_source_is_named(cli):
    proc = cli.run("plan", cli.env.dataset, COORD_TEST_VCENTER_PASSWORD="")
    assert proc.returncode == 2
    assert "config.endpoints.vcsim.password_env" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_policy_is_refused_with_its_field(cli):
    proc = cli.run("policy", "create", json.dumps({"name": "x", "priority": 1, "ladder": ["quiesce"],
                                                    "match": {"name_regex": "db-(["}}))
    assert proc.returncode == 2
    assert "policy.match.name_regex" in proc.stderr and "Traceback" not in proc.stderr
    code, policies = cli.json("policy", "list")
    assert code == 0 and policies == []


def test_plan_json_follows_the_plan_schema(cli):
    code, plan = cli.json("plan", cli.env.dataset)
    assert code == 0
    Draft202012Validator(schemas.load_schema("plan")).validate(
        {k: v for k, v in plan.items() if k != "endpoint_errors"})
    assert [v["facts"]["name"] for v in plan["vms"]] == [f"{cli.env.datastore}-app"]
    assert cli.env.product_snapshots() == []


def test_snapshot_exit_codes_follow_the_outcome(cli):
    code, report = cli.json("snapshot", cli.env.dataset, "--name", "synced")
    assert code == 0 and report["vmsynced"] is True
    cli.env.vm("notools", tools_running=False)
    code, report = cli.json("snapshot", cli.env.dataset, "--name", "degraded")
    assert code == 1 and report["vmsynced"] is False
    code, manifest = cli.json("report", f"{cli.env.dataset}@degraded")
    assert code == 0 and manifest["run_id"] == report["run_id"]
    code, runs = cli.json("runs")
    assert [r["snapshot"] for r in runs] == [f"{cli.env.dataset}@degraded", f"{cli.env.dataset}@synced"]


@pytest.mark.parametrize("flavour", ["sanoid", "zrepl"])
def test_pre_and_post_hooks_around_someone_elses_snapshot(cli, flavour):
    name = f"autosnap_{flavour}"
    if flavour == "sanoid":
        env = {"SANOID_SCRIPT": "pre", "SANOID_TARGETS": cli.env.dataset, "SANOID_SNAPNAMES": name}
        after = env | {"SANOID_SCRIPT": "post", "SANOID_PRE_FAILURE": "0"}
    else:
        env = {"ZREPL_HOOKTYPE": "pre_snapshot", "ZREPL_FS": cli.env.dataset, "ZREPL_SNAPNAME": name}
        after = env | {"ZREPL_HOOKTYPE": "post_snapshot"}
    pre = cli.run("hook", "pre", **env)
    assert pre.returncode == 0, pre.stderr
    assert len(cli.env.product_snapshots()) == 1
    subprocess.run(["zfs", "snapshot", f"{cli.env.dataset}@{name}"], check=True)  # the tool's own
    post = cli.run("hook", "post", **after)
    assert post.returncode == 0, post.stderr
    assert cli.env.product_snapshots() == []
    assert cli.env.pool.get(f"{cli.env.dataset}@{name}", "freenas:vmsynced") == "Y"
    assert cli.env.pool.get(f"{cli.env.dataset}@{name}", "org.truenas.vmware-coord:run")


def test_post_hook_without_pre_says_so(cli):
    proc = cli.run("hook", "post", SANOID_TARGETS=cli.env.dataset, SANOID_SNAPNAMES="x")
    assert proc.returncode == 4 and "was the pre hook run" in proc.stderr


def test_fingerprint_reads_the_servers_certificate(cli):
    sim = cli.env.sim
    proc = subprocess.run([CLI, "fingerprint", sim.host, "--port", str(sim.port)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == sim.sha256


def test_install_reports_the_datasets_stock_flagged_and_the_fix(zfs_pool, tmp_path, capsys):
    from truenas_vmware_coord.cli import install
    flagged = zfs_pool.create_dataset(f"flags{tmp_path.name[-8:]}/stock")
    clean = zfs_pool.create_dataset(f"flags{tmp_path.name[-8:]}/clean")
    subprocess.run(["zfs", "set", "freenas:vmsynced=Y", flagged], check=True)   # what stock left
    # a snapshot's own label is what it should be: not reported
    subprocess.run(["zfs", "snapshot", "-o", "freenas:vmsynced=N", f"{clean}@own"], check=True)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    assert install.main("install-plugin", str(plugins), str(tmp_path / "site")) == 0
    out = capsys.readouterr().out
    assert flagged in out and clean not in out and "vmware_coord.clear_dataset_flags" in out
