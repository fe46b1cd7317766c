"""Build a runnable copy of the real middlewared from checkouts (no TrueNAS file is modified).

Given checkouts of truenas/middleware, truenas/api_client and truenas/zettarepl, this makes
``.cache/truenas-real/<key>/``:

- ``venv/``: an interpreter (``TRUENAS_PYTHON`` or the python3 on PATH) with the framework's
  PyPI dependencies pinned as TrueNAS ships them (``pins.py``), truenas_api_client and
  zettarepl installed from copies of their checkouts, pytest, and the stubs
  (``stubs/``, as the package ``truenas_real_stubs`` loaded by a ``.pth`` file).
- ``build/middlewared/``: a copy of the checkout's ``src/middlewared`` (a ``.pth`` file puts it
  on the venv's path). Only this copy's ``plugins/`` directory gets the plugin's loader.
- ``factory-v1.db``: the database built as TrueNAS's packaging builds it
  (``src/middlewared/debian/rules`` ``override_dh_auto_build``: ``sqlite3 freenas-v1.db <
  middlewared/alembic/initial.sql``, then ``alembic upgrade head`` in ``middlewared/`` with
  ``FREENAS_DATABASE`` set), before the plugin is installed, as on a real image.
- ``site/``: this project installed with ``pip install --target`` (as the README says to install
  it on TrueNAS), and the plugin installed into the copy with the project's own installer
  (``python -m truenas_vmware_coord.cli.main install-plugin --plugins-dir ... --site ...``).
  Rebuilt whenever ``plugin/``, ``ui_extension/`` (the page, package ``truenas_vmware_coord.ui``)
  or ``setup.py`` changes; everything else only when the key
  (interpreter, pins, checkouts' commits, this package) changes.
- ``manifest.json``: what went in (commits, tags, pins, ``pip freeze``, stubs).

Run with any Python 3.11+ (stdlib only)::

    python3 -m tools.truenas_real.build MIDDLEWARE_SRC API_CLIENT_SRC ZETTAREPL_SRC
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import pins
from .stubs import STUBS

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("VMWARE_COORD_CACHE", ROOT / ".cache")) / "truenas-real"
PROJECT_FILES = ("setup.py", "plugin", "ui_extension")  # setup.py installs ui_extension/ as .ui
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "build", "*.egg-info")


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Sources:
    middleware: Path  # the truenas/middleware checkout (its src/middlewared is used)
    api_client: Path
    zettarepl: Path

    @classmethod
    def from_args(cls, middleware: str, api_client: str | None, zettarepl: str | None) -> Sources:
        mw = Path(middleware).resolve()
        if (mw / "middlewared" / "main.py").is_file() and mw.name == "middlewared":
            mw = mw.parents[1]  # given src/middlewared: the checkout is two levels up
        if not (mw / "src" / "middlewared" / "middlewared" / "main.py").is_file():
            raise BuildError(
                f"{middleware}: not a truenas/middleware checkout (no src/middlewared/middlewared)"
            )
        sibling = mw.parent
        api = Path(api_client).resolve() if api_client else _guess(sibling, "api_client")
        zet = Path(zettarepl).resolve() if zettarepl else _guess(sibling, "zettarepl")
        if not (api / "truenas_api_client").is_dir():
            raise BuildError(f"{api}: not a truenas/api_client checkout")
        if not (zet / "zettarepl").is_dir():
            raise BuildError(f"{zet}: not a truenas/zettarepl checkout")
        return cls(mw, api, zet)

    @property
    def middlewared(self) -> Path:
        return self.middleware / "src" / "middlewared"


@dataclasses.dataclass(frozen=True)
class Build:
    """A finished build: where everything is."""

    dir: Path
    python: Path
    middlewared: Path  # build/middlewared (contains the package dir "middlewared")
    factory_db: Path
    site: Path
    manifest: dict

    @property
    def plugins_dir(self) -> Path:
        return self.middlewared / "middlewared" / "plugins"

    def as_json(self) -> str:
        return json.dumps(
            {
                "dir": str(self.dir),
                "python": str(self.python),
                "middlewared": str(self.middlewared),
                "factory_db": str(self.factory_db),
                "site": str(self.site),
                "version": self.manifest["middleware"]["version"],
            }
        )


def _guess(parent: Path, name: str) -> Path:
    found = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(name))
    if len(found) != 1:
        raise BuildError(f"give the {name} checkout explicitly (found {len(found)} candidates in {parent})")
    return found[0]


def _run(cmd: list[str], what: str, **kwargs: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BuildError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def _git(checkout: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def describe(checkout: Path) -> dict[str, str]:
    """Commit, tag and dirtiness of a checkout (a plain copy without git: a content hash)."""
    commit = _git(checkout, "rev-parse", "HEAD")
    if not commit:
        h = hashlib.sha256()
        for path in sorted(checkout.rglob("*.py")):
            h.update(str(path.relative_to(checkout)).encode())
            h.update(path.read_bytes())
        return {"path": str(checkout), "commit": "", "describe": "", "content": h.hexdigest()[:16]}
    return {
        "path": str(checkout),
        "commit": commit,
        "describe": " ".join(_git(checkout, "tag", "--points-at", "HEAD").split())
        or _git(checkout, "describe", "--tags", "--always"),
        "dirty": "yes" if _git(checkout, "status", "--porcelain", "--untracked-files=no") else "no",
    }


def middleware_version(sources: Sources) -> str:
    """'25.10.6' from the checkout's tag (TS-25.10.6), else from the newest API directory."""
    tag = _git(sources.middleware, "describe", "--tags", "--exact-match")
    if tag.startswith("TS-"):
        return tag[3:]
    api = sorted(
        (sources.middlewared / "middlewared" / "api").glob("v[0-9]*"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name[1:].split("_")],
    )
    return api[-1].name[1:].replace("_", ".") + "-MASTER" if api else "0.0.0-MASTER"


def python_for_build() -> str:
    return os.environ.get("TRUENAS_PYTHON") or shutil.which("python3") or sys.executable


def _python_version(python: str) -> str:
    return _run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], "python --version"
    ).strip()


def _tree_hash(*paths: Path) -> str:
    h = hashlib.sha256()
    for base in paths:
        files = (
            [base]
            if base.is_file()
            else sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        )
        for path in files:
            h.update(str(path.relative_to(base.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build_key(sources: Sources, python: str) -> tuple[str, dict]:
    inputs = {
        "python": python,
        "python_version": _python_version(python),
        "requirements": pins.framework_requirements(middleware_version(sources)),
        "middleware": describe(sources.middleware),
        "api_client": describe(sources.api_client),
        "zettarepl": describe(sources.zettarepl),
        "tools": _tree_hash(HERE / "build.py", HERE / "pins.py", HERE / "stubs"),
        "version": middleware_version(sources),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16], inputs


def _say(message: str) -> None:
    print(f"truenas-real: {message}", file=sys.stderr, flush=True)


def _pip(python: Path, *args: str, what: str) -> None:
    _run([str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args], what)


def _site_packages(python: Path) -> Path:
    return Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "site-packages"
        ).strip()
    )


def _framework(out: Path, sources: Sources, python: str, inputs: dict) -> None:
    """The venv, the checkouts' packages, the middlewared copy, the stubs and the factory DB."""
    started = time.monotonic()
    venv = out / "venv"
    _say(f"creating {venv} with {python} ({inputs['python_version']})")
    _run([python, "-m", "venv", str(venv)], "python -m venv")
    vpy = venv / "bin" / "python"
    reqs = out / "requirements.txt"
    requirements = inputs["requirements"]
    reqs.write_text("\n".join(requirements) + "\n")
    pinned = "pinned as TrueNAS 25.10 ships them" if inputs["version"].startswith("25.10") else "not pinned"
    _say(f"installing {len(requirements)} packages ({pinned}; pins.py)")
    _pip(vpy, "install", "-q", "-r", str(reqs), what="pip install of the pinned framework dependencies")

    # Copies: pip builds in the source tree, and the checkouts must stay untouched.
    src = out / "src"
    for name, checkout in (("api_client", sources.api_client), ("zettarepl", sources.zettarepl)):
        shutil.copytree(checkout, src / name, ignore=IGNORE)
    _pip(
        vpy,
        "install",
        "-q",
        "--no-deps",
        str(src / "api_client"),
        str(src / "zettarepl"),
        what="pip install of truenas_api_client and zettarepl",
    )

    build_dir = out / "build"
    shutil.copytree(sources.middlewared, build_dir / "middlewared", ignore=IGNORE)
    site_packages = _site_packages(vpy)
    (site_packages / "truenas_middlewared.pth").write_text(f"{build_dir / 'middlewared'}\n")
    shutil.copytree(HERE / "stubs", site_packages / "truenas_real_stubs", ignore=IGNORE)
    (site_packages / "truenas_real_stubs.pth").write_text(
        "import truenas_real_stubs; truenas_real_stubs.install()\n"
    )

    _say("building the factory database (initial.sql, alembic upgrade head)")
    db = out / "factory-v1.db"
    package = build_dir / "middlewared" / "middlewared"
    with open(package / "alembic" / "initial.sql", "rb") as sql:
        if shutil.which("sqlite3"):
            subprocess.run(["sqlite3", str(db)], stdin=sql, check=True)
        else:  # the same SQL through Python's sqlite3 module
            _run(
                [
                    str(vpy),
                    "-c",
                    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
                    " c.executescript(open(sys.argv[2]).read()); c.commit()",
                    str(db),
                    str(package / "alembic" / "initial.sql"),
                ],
                "initial.sql",
            )
    _run(
        [str(venv / "bin" / "alembic"), "upgrade", "head"],
        "alembic upgrade head (is setserial installed?)",
        cwd=package,
        env=dict(os.environ, PYTHONPATH="..", FREENAS_DATABASE=str(db)),
    )
    freeze = _run([str(vpy), "-m", "pip", "freeze", "--all"], "pip freeze").split()
    manifest = {
        **inputs,
        "version": middleware_version(sources),
        "pip_freeze": freeze,
        "stubs": STUBS,
        "setup_seconds": round(time.monotonic() - started, 1),
    }
    (out / "framework.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _project(out: Path, vpy: Path, plugins_dir: Path) -> str:
    """This project into site/ (pip --target) and its loader into the copy's plugins/."""
    phash = _tree_hash(*(ROOT / f for f in PROJECT_FILES))
    stamp = out / "site.stamp"
    site = out / "site"
    if stamp.exists() and stamp.read_text() == phash and (plugins_dir / "vmware_coord.py").exists():
        return phash
    _say("installing this project (pip install --target) and the plugin (install-plugin)")
    shutil.rmtree(site, ignore_errors=True)
    copy = out / "project-src"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        (
            shutil.copytree(source, copy / name, ignore=IGNORE)
            if source.is_dir()
            else shutil.copy2(source, copy / name)
        )
    _pip(vpy, "install", "-q", "--target", str(site), str(copy), what="pip install --target of this project")
    _run(
        [
            str(vpy),
            "-m",
            "truenas_vmware_coord.cli.main",
            "install-plugin",
            "--plugins-dir",
            str(plugins_dir),
            "--site",
            str(site),
        ],
        "vmware-coord install-plugin",
        env=dict(os.environ, PYTHONPATH=str(site)),
    )
    stamp.write_text(phash)
    return phash


def build(sources: Sources, python: str | None = None) -> Build:
    python = python or python_for_build()
    key, inputs = build_key(sources, python)
    out = CACHE / key
    if not (out / "framework.json").exists():
        # framework.json is written last: a directory without it is a build that did not finish.
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        _framework(out, sources, python, inputs)
    framework = json.loads((out / "framework.json").read_text())
    vpy = out / "venv" / "bin" / "python"
    mwdir = out / "build" / "middlewared"
    phash = _project(out, vpy, mwdir / "middlewared" / "plugins")
    framework["project"] = phash
    framework["middleware"]["version"] = framework["version"]
    (out / "manifest.json").write_text(json.dumps(framework, indent=1, sort_keys=True))
    return Build(out, vpy, mwdir, out / "factory-v1.db", out / "site", framework)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    sources = Sources.from_args(args[0], *(args[1:] + [None, None])[:2])
    started = time.monotonic()
    result = build(sources)
    _say(f"ready in {time.monotonic() - started:.1f}s: {result.dir}")
    print(result.as_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
