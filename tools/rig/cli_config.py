"""A ``vmware-coord`` configuration file for a rig simulator (demo and tests)."""

from __future__ import annotations

from pathlib import Path

from .vcsim import Simulator


def write_cli_config(path: Path, sim: Simulator, state_dir: Path, password_env: str,
                     mappings: list[tuple[str, str]], nas_addresses: list[str],
                     engine: dict[str, int] | None = None, port: int | None = None,
                     restore_share: str | None = None) -> Path:
    """mappings: (datastore name, dataset) pairs on the simulator's endpoint. ``port``: connect
    there instead of the simulator's own port (a proxy in front of it; the pin stays the
    simulator's certificate). ``restore_share``: how a restore exports its clone (the rig has
    no NFS server: "exported", the simulator reads the clone's directory itself)."""
    lines = [f'state_dir = "{state_dir}"', "", "[nas]",
             "addresses = [" + ", ".join(f'"{a}"' for a in nas_addresses) + "]",
             *([f'restore_share = "{restore_share}"'] if restore_share else []), "",
             "[endpoints.vcsim]", f'password_env = "{password_env}"', "",
             "[endpoints.vcsim.connection]", f'host = "{sim.host}"', f"port = {port or sim.port}",
             f'username = "{sim.username}"', f'tls = {{ sha256_fingerprint = "{sim.sha256}" }}', ""]
    for datastore, dataset in mappings:
        lines += ["[[mappings]]", f'id = "{datastore}"', 'endpoint = "vcsim"',
                  f'datastore = "{datastore}"', f'dataset = "{dataset}"', ""]
    if engine:
        lines += ["[engine]"] + [f"{k} = {v}" for k, v in engine.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
