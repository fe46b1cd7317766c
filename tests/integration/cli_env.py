"""Running the real ``vmware-coord`` console script against a rig simulator and zfs-fuse."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from engine_env import NAS, EngineEnv
from truenas_vmware_coord.store.policy_repo import SqlitePolicyRepository

from tools.rig.cli_config import write_cli_config

PASSWORD_ENV = "COORD_TEST_VCENTER_PASSWORD"
CLI = str(Path(sys.executable).with_name("vmware-coord"))


@dataclasses.dataclass
class CliEnv:
    env: EngineEnv
    config: Path
    state_dir: Path

    @staticmethod
    def create(env: EngineEnv, tmp_path: Path, **engine: int) -> CliEnv:
        state = tmp_path / "state"
        config = write_cli_config(tmp_path / "config.toml", env.sim, state, PASSWORD_ENV,
                                  [(env.datastore, env.dataset)], [NAS], engine or None)
        return CliEnv(env, config, state)

    def environ(self, **extra: str) -> dict[str, str]:
        return {**os.environ, PASSWORD_ENV: self.env.sim.password, **extra}

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, "-c", str(self.config), *args], capture_output=True, text=True,
                              env=self.environ(**extra_env), timeout=120)

    def start(self, *args: str, path_prefix: Path | None = None) -> subprocess.Popen:
        """Start in a session of its own, so a SIGKILL can take its children along."""
        env = self.environ()
        if path_prefix is not None:
            env["PATH"] = f"{path_prefix}:{env['PATH']}"
        return subprocess.Popen([CLI, "-c", str(self.config), *args], env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def add_policy(self, document: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with SqlitePolicyRepository(self.state_dir / "policies.sqlite") as repo:
            repo.create(document)

    def journal_path(self) -> Path:
        return self.state_dir / "journal.sqlite"

    def json(self, *args: str) -> tuple[int, object]:
        proc = self.run("--json", *args)
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None
