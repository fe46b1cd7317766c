"""The real sanoid (Debian's 2.1.0, /usr/sbin/sanoid) run against a rig pool, never the machine's.

``examples/sanoid/sanoid.conf`` is what the README quotes; tests use it as it is, with two
placeholders replaced: the dataset ``tank/vmware`` and the hook path
``/usr/local/bin/vmware-coord-hook``. A scenario's own options (``recursive = zfs``,
``no_inconsistent_snapshot = yes``) are appended to the file's last section, the dataset's.

Each run gets private ``--configdir``, ``--cache-dir`` and ``--run-dir`` directories, so
/etc/sanoid, /var/cache/sanoid and /var/run/sanoid are never read or written.

sanoid walks its dataset sections in Perl's hash order, which Perl randomises per process;
``hash_seed`` fixes it (PERL_HASH_SEED, PERL_PERTURB_KEYS=0), and :func:`seed_for` finds a
seed that walks a given section first, by a ``--readonly`` run (which prints what it would
do and runs no script).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

SANOID = "/usr/sbin/sanoid"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sanoid" / "sanoid.conf"
DATASET_PLACEHOLDER = "tank/vmware"
HOOK_PLACEHOLDER = "/usr/local/bin/vmware-coord-hook"
# What sanoid prints for each snapshot it takes ("taking snapshot pool/ds@name" + " (zfs recursive)").
_TAKING = re.compile(r"^taking snapshot (\S+@\S+)", re.MULTILINE)
_PRE = re.compile(r"^executing pre_snapshot_script '[^']*' on dataset '([^']+)'", re.MULTILINE)
_ZFS_GET_USAGE = re.compile(r"invalid option 't'\nusage:\n.*?SMB SID[^\n]*\n(?:[ \t]*\n)*", re.DOTALL)


def render(dataset: str, hook: str, options: Mapping[str, str] | None = None,
           example: Path = EXAMPLE) -> str:
    """The example configuration for ``dataset`` and ``hook``, plus ``options`` in its section."""
    text = example.read_text()
    sections = re.findall(r"^\[([^\]]+)\]", text, re.MULTILINE)
    if sections[-1:] != [DATASET_PLACEHOLDER] or HOOK_PLACEHOLDER not in text:
        raise ValueError(f"{example}: its last section must be [{DATASET_PLACEHOLDER}] and it must run "
                         f"{HOOK_PLACEHOLDER}")
    text = text.replace(HOOK_PLACEHOLDER, hook).replace(DATASET_PLACEHOLDER, dataset)
    extra = "".join(f"\t{key} = {value}\n" for key, value in (options or {}).items())
    return text.rstrip("\n") + "\n" + extra


@dataclasses.dataclass
class SanoidRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    pgid: int                  # sanoid's process group: the scripts it ran are in it

    @property
    def taken(self) -> list[str]:
        """The snapshots sanoid said it was taking (whether or not zfs managed)."""
        return _TAKING.findall(self.stdout)

    def __str__(self) -> str:
        # zfs-fuse's "zfs get" has no -t: its usage text, printed on every run, says nothing.
        stderr = _ZFS_GET_USAGE.sub("[zfs get -t: not supported by zfs-fuse]\n", self.stderr)
        return f"sanoid exited {self.returncode} after {self.seconds:.1f}s\n{self.stdout}\n{stderr}"

    __repr__ = __str__   # what a failed assertion shows


def take_snapshots(config_text: str, workdir: Path, env: Mapping[str, str], timeout: float = 120,
                   hash_seed: int | None = None, readonly: bool = False) -> SanoidRun:
    """``sanoid --take-snapshots --verbose`` with this configuration, in directories of its own."""
    env = dict(env)
    if hash_seed is not None:
        env |= {"PERL_HASH_SEED": str(hash_seed), "PERL_PERTURB_KEYS": "0"}
    workdir.mkdir(parents=True, exist_ok=True)
    configdir, cache, run = workdir / "etc", workdir / "cache", workdir / "run"
    for directory in (configdir, cache, run):
        directory.mkdir(exist_ok=True)
    (configdir / "sanoid.conf").write_text(config_text)
    argv = [SANOID, "--take-snapshots", "--verbose", f"--configdir={configdir}", f"--cache-dir={cache}",
            f"--run-dir={run}", *(["--readonly"] if readonly else [])]
    started = time.monotonic()
    # A session of its own: scripts sanoid leaves running (it dies when one overruns) can be
    # found by its process group afterwards.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=workdir, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # sanoid still leads its group: it is ours
        out, err = proc.communicate()
    return SanoidRun(proc.returncode, out, err, time.monotonic() - started, proc.pid)


def kill_leftovers(run: SanoidRun) -> None:
    """SIGKILL the scripts a sanoid that died by a signal left running (its process group;
    the product's detached helpers start sessions of their own). A sanoid that exited
    normally waited for its scripts: nothing to do."""
    if run.returncode < 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pgid, signal.SIGKILL)


def pre_order(run: SanoidRun) -> list[str]:
    """The datasets whose pre script sanoid ran (or, read-only, would have run), in order."""
    return _PRE.findall(run.stdout)


def seed_for(config_text: str, workdir: Path, env: Mapping[str, str], first: str, tries: int = 64) -> int:
    """A Perl hash seed with which sanoid walks the section ``first`` before the others."""
    for seed in range(tries):
        order = pre_order(take_snapshots(config_text, workdir / f"order{seed}", env, hash_seed=seed,
                                         readonly=True))
        if len(order) > 1 and order[0] == first:
            return seed
    raise RuntimeError(f"no hash seed below {tries} makes sanoid walk {first} first")
