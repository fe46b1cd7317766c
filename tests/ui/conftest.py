"""The UI extension against a local middleware stand-in, in Debian's Chromium (Playwright)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tools.rig import inventory

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
NAS = "nas.test.local"   # the middleware double's own host name
API_KEY = "1-ui-test-key"
UI_TOKEN = "ui-session-token-for-tests"   # what the TrueNAS web UI keeps in its localStorage
PAGE = "_plugins/vmware_coord/"
_READY = re.compile(r"^ui ready url=(\S+) pid=(\d+)$")
_modules = itertools.count()


@pytest.fixture(scope="module")
def ui_sim(start_vcsim):
    return start_vcsim("-vm", "0", "-strict")


@pytest.fixture(scope="module")
def scenario(ui_sim, zfs_pool) -> dict:
    """A dataset behind an NFS datastore with a few telling VMs."""
    si = inventory.connect_to(ui_sim)
    dataset = zfs_pool.create_dataset(f"ui{os.getpid()}-{next(_modules)}/nfs01")   # one per test module
    datastore = inventory.add_nfs_datastore(si, str(zfs_pool.dataset_mountpoint(dataset)), NAS)
    for name in ("app-01", "app-02"):
        inventory.create_vm(si, f"{datastore}-{name}", datastore)
    gpu = inventory.create_vm(si, f"{datastore}-gpu-01", datastore)
    inventory.add_passthrough(gpu, "GPU 0")
    hosts = sorted({vm.runtime.host.name for vm in inventory.vms(si)})
    si.content.sessionManager.Logout()
    return {"dataset": dataset, "datastore": datastore, "esx_hosts": hosts}


@pytest.fixture(scope="module")
def ui_url(ui_sim, scenario, tmp_path_factory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("ui-mw")
    spec = workdir / "spec.json"
    spec.write_text(json.dumps({"host": ui_sim.host, "port": ui_sim.port, "username": ui_sim.username,
                                "sha256": ui_sim.sha256, "api_key": API_KEY, "ui_token": UI_TOKEN,
                                **scenario}))
    env = {**os.environ, "COORD_UI_VCENTER_PASSWORD": ui_sim.password}
    proc = subprocess.Popen([sys.executable, "-m", "tests.ui.server", "--workdir", str(workdir / "mw"),
                             "--spec", str(spec)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        match = _READY.match(line)
        assert match, f"the UI server did not start: {line!r}"
        yield match[1] + PAGE
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, ui_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(ui_url)
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("tab", name="Mappings & plan").wait_for()
    yield page
    context.close()


@pytest.fixture
def shot():
    """Screenshots of each view, kept as test artifacts (tests/artifacts/ui/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    return take
