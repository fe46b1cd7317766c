"""The page the plugin serves at ``/_plugins/vmware_coord/``, from the real middlewared, in Chromium.

In this namespace middlewared serves HTTP on 127.0.0.1:6000 (TS-25.10.6 ``main.py:1463`` and
``:1472-1475``), where TrueNAS's nginx proxies both ``/_plugins`` and ``/api``
(``etc_files/local/nginx/nginx.conf.mako:407-418`` and ``:242-251``): the page and its websocket
(``ws://127.0.0.1:6000/api/current``) are one origin, as behind nginx. The page is mounted by
the plugin through ``plugin_route_add`` (``main.py:536-537``) from the service's ``__init__``.

Signing in: with an API key made by the real ``api_key.create`` (``api/v25_10_5/api_key.py:53-66``:
``name`` and ``username``), through the page's form and the real ``auth.login_with_api_key``; and
with a session token made by the real ``auth.generate_token`` (``api/v25_10_5/auth.py:213-221``:
``ttl``, ``attrs``, ``match_origin``, ``single_use``) put where the TrueNAS web UI keeps its own
(localStorage ``ngx-webstorage|token``, a JSON string), through the real ``auth.login_with_token``.
One step of the API-key login, TrueNAS's own PAM module ``pam_tdb.so``, is not in Debian: it is
stood in for by ``tools/truenas_real/mocks.py`` ``LIBPAM_AUTHENTICATE`` (the token login runs
Debian's PAM modules only, unmocked).

Debian's Chromium (``/usr/bin/chromium``, with the flags of ``tests/ui/conftest.py``) through
Playwright; screenshots in ``tests/artifacts/real_truenas/``. Every key and token made here is
handed to the session (``keep_secret``), which refuses any artifact that holds one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from truenas_api_client import Client

from .conftest import ARTIFACTS, keep_secret

SITE = "127.0.0.1:6000"
PAGE = f"http://{SITE}/_plugins/vmware_coord/"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [  # tests/ui/conftest.py, and port 6000 allowed
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # 6000 (X11) is on Chromium's list of restricted ports (net::ERR_UNSAFE_PORT); it is where
    # middlewared listens and nginx proxies to on TrueNAS, so this browser may use it.
    "--explicitly-allowed-ports=6000",
]
UI_TOKEN_KEY = "ngx-webstorage|token"


def _get(path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(PAGE + path, timeout=30) as answer:  # noqa: S310 - 127.0.0.1
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), b""


def test_the_page_is_served_with_its_headers_and_nothing_outside_it(observe: Any) -> None:
    status, headers, body = _get("")
    observe(
        "GET /_plugins/vmware_coord/",
        {
            "status": status,
            **{
                k: headers.get(k)
                for k in (
                    "Content-Type",
                    "Content-Security-Policy",
                    "X-Content-Type-Options",
                    "Cache-Control",
                )
            },
        },
    )
    assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, headers)
    assert "default-src 'self'" in headers["Content-Security-Policy"], headers
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"], headers
    assert headers["X-Content-Type-Options"] == "nosniff", headers
    assert b"<title>VMware snapshot coordination" in body
    # A module script under nosniff needs a JavaScript type; the forms come from generated/.
    status, headers, _ = _get("app.js")
    assert status == 200 and "javascript" in headers["Content-Type"], (status, headers)
    status, headers, body = _get("generated/forms.json")
    assert status == 200 and "policy" in json.loads(body), status
    escapes = {}
    for path in (
        "../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2f..%2fetc%2fpasswd",
        "generated/..%2f..%2f__init__.py",
        "__init__.py",
        "nothing-here.js",
    ):
        escapes[path] = _get(path)[0]
    observe("GET /_plugins/vmware_coord/<escape>", escapes)
    assert set(escapes.values()) == {404}, escapes


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def api_key(api: Any, observe: Any) -> Iterator[str]:
    """A real API key for root, made as the TrueNAS UI makes one (api_key.create)."""
    created = api.call("api_key.create", {"name": "vmware-coord page test", "username": "root"})
    key = keep_secret("API key", created["key"])
    observe("api_key.create result keys", sorted(created))
    try:
        yield key
    finally:
        api.call("api_key.delete", created["id"])


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)


def _new_page(browser: Any, token: str | None = None) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if token is not None:
        # What the TrueNAS web UI leaves for a page of its site: ngx-webstorage JSON-serialises the value.
        stored = json.dumps(json.dumps(token))
        context.add_init_script(f"localStorage.setItem({json.dumps(UI_TOKEN_KEY)}, {stored})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def _show_plan(page: Any, dataset: str, vm_names: list[str]) -> None:
    from playwright.sync_api import expect

    card = page.locator("#view-plan section.card", has_text=f"nfs01 ⇄ {dataset}")
    expect(card).to_be_visible()
    card.get_by_role("button", name="Show plan").click()
    rows = card.locator(".plan tbody tr")
    expect(rows).to_have_count(len(vm_names), timeout=60_000)
    for name in vm_names:
        expect(rows.filter(has_text=name)).to_have_count(1)
    expect(page.locator("#status")).to_contain_text(f"Plan for {dataset}: {len(vm_names)} VMs")


def test_signed_in_with_a_real_api_key_the_plan_tab_lists_the_stock_mapping_and_its_plan(
    browser: Any, api_key: str, mapping: dict[str, Any], vms: dict[str, list[str]]
) -> None:
    from playwright.sync_api import expect

    context, page, errors = _new_page(browser)
    try:
        page.goto(PAGE)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        # The key's id with another secret: refused, and the form stays.
        page.get_by_label("API key").fill(api_key.split("-", 1)[0] + "-" + "x" * 64)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#status")).to_contain_text("login refused", timeout=30_000)
        expect(page.locator("#app")).to_be_hidden()
        page.get_by_label("API key").fill(api_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("tab", name="Mappings & plan")).to_have_attribute("aria-selected", "true")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#status")).to_contain_text("Connected (API key)")
        _show_plan(page, mapping["row"]["filesystem"], vms["nfs01"])
        _shot(page, "plan-signed-in-with-an-api-key")
        assert not errors, errors
    finally:
        context.close()


def test_with_the_ui_session_token_in_local_storage_the_page_signs_in_by_itself(
    browser: Any, api: Any, mapping: dict[str, Any], vms: dict[str, list[str]], observe: Any
) -> None:
    from playwright.sync_api import expect

    # The web UI makes its token over its own websocket, from the browser's address, with no
    # arguments (match_origin=True). This one is made over the unix socket (the test's root
    # session), and utils/origin.py:90-94 matches a unix origin by uid/gid, a TCP one by remote
    # address: with match_origin a unix-made token is refused from any TCP client, as observed here.
    pinned = keep_secret("session token", api.call("auth.generate_token", 600, {}, True, False))
    with Client(f"ws://{SITE}/api/current") as tcp:
        refused = tcp.call("auth.login_with_token", pinned)
    observe("auth.login_with_token over TCP of a token made over the unix socket with match_origin", refused)
    assert refused is False
    token = keep_secret("session token", api.call("auth.generate_token", 600, {}, False, False))
    context, page, errors = _new_page(browser, token)
    try:
        page.goto(PAGE)
        expect(page.locator("#status")).to_contain_text("TrueNAS session")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.get_by_role("tab", name="Mappings & plan")).to_have_attribute("aria-selected", "true")
        _show_plan(page, mapping["row"]["filesystem"], vms["nfs01"])
        _shot(page, "signed-in-with-the-ui-session")
        assert not errors, errors
    finally:
        context.close()


def test_with_an_invalid_token_in_local_storage_the_sign_in_form_is_shown(browser: Any) -> None:
    from playwright.sync_api import expect

    context, page, errors = _new_page(browser, "not-a-token-of-this-middlewared")
    try:
        page.goto(PAGE)
        expect(page.locator("#status")).to_contain_text("Sign in to the middleware", timeout=30_000)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        _shot(page, "invalid-token-shows-the-form")
        assert not errors, errors
    finally:
        context.close()
