"""The UI extension in a real browser against the real plugin services (no canned answers)."""

from __future__ import annotations

import re

from conftest import UI_TOKEN
from playwright.sync_api import Page, expect


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def show_plan(page: Page) -> None:
    open_tab(page, "Mappings & plan")
    page.get_by_role("button", name="Show plan").click()
    expect(page.locator("#view-plan .plan table")).to_be_visible()


def test_plan_shows_each_vm_with_its_strategy_and_reasons(page: Page, shot):
    show_plan(page)
    rows = page.locator("#view-plan .plan tbody tr")
    expect(rows).to_have_count(3)
    gpu = rows.filter(has_text="gpu-01")
    expect(gpu).to_contain_text("passthrough")
    expect(gpu).to_contain_text("quiesce pruned")
    expect(rows.filter(has_text="app-01")).to_contain_text("quiesce → crash")
    shot(page, "plan-1280")
    page.set_viewport_size({"width": 800, "height": 900})
    expect(gpu).to_be_visible()
    shot(page, "plan-800")


def test_a_bad_regular_expression_shows_the_apis_error_on_its_field(page: Page, shot):
    open_tab(page, "Policies")
    page.get_by_role("button", name="New policy").click()
    page.get_by_label("Name *", exact=True).fill("broken")
    page.locator("#policy-form-match-name_regex").fill("db-([")
    page.get_by_role("button", name="Add").click()
    page.get_by_role("button", name="Create policy").click()
    field = page.locator("[data-field='match.name_regex']")
    expect(field.locator(".error")).to_contain_text(re.compile("regular expression", re.I))
    expect(page.locator("#policy-form-match-name_regex")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#status")).to_contain_text("Not saved")
    shot(page, "policy-error")
    open_tab(page, "Policies")
    expect(page.locator("#view-policies > table tbody tr").filter(has_text="broken")).to_have_count(0)


def test_a_new_policy_changes_the_plan_before_and_after_it_is_saved(page: Page, shot):
    open_tab(page, "Policies")
    page.get_by_role("button", name="New policy").click()
    page.get_by_label("Name *", exact=True).fill("gpu-hosts")
    page.locator("#policy-form-ladder").locator("..").get_by_role("combobox").select_option("crash")
    page.get_by_role("button", name="Add").click()
    page.locator("[data-field='match.has_blocker']").get_by_label("passthrough").check()
    page.get_by_role("button", name="Preview plan").click()
    preview = page.locator(".preview")
    expect(preview.locator("tbody tr").filter(has_text="gpu-01")).to_contain_text("changes")
    expect(preview.locator("tbody tr").filter(has_text="app-01")).not_to_contain_text("changes")
    shot(page, "policy-preview")
    page.get_by_role("button", name="Create policy").click()
    expect(page.locator("#status")).to_contain_text("Saved policy 'gpu-hosts'")
    expect(page.locator("#view-policies > table tbody tr").filter(has_text="gpu-hosts")).to_be_visible()
    shot(page, "policies")
    show_plan(page)
    expect(page.locator("#view-plan .plan tbody tr").filter(has_text="gpu-01")).to_contain_text("gpu-hosts")


def test_a_manual_run_shows_progress_and_its_manifest(page: Page, shot):
    open_tab(page, "Runs")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#status")).to_contain_text("taken", timeout=60_000)
    expect(page.locator("#run-progress")).to_have_attribute("value", "100")
    manifest = page.locator("#manifest")
    expect(manifest.locator("tbody tr")).to_have_count(3)
    expect(manifest.locator("tbody tr").filter(has_text="app-01")).to_contain_text("quiesced")
    expect(page.get_by_role("table", name="Recent runs").locator("tbody tr")).not_to_have_count(0)
    shot(page, "runs-manifest")


def test_endpoint_trust_reads_and_shows_the_pinned_certificate(page: Page, shot):
    open_tab(page, "Endpoint trust")
    page.get_by_role("button", name="Read certificate").click()
    card = page.locator("#view-trust section.card").first
    expect(card.locator(".fingerprint code")).to_have_text(re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$"))
    expect(card.locator(".fingerprint")).to_contain_text("pinned")
    shot(page, "trust")


def test_tabs_work_with_the_keyboard(page: Page):
    page.get_by_role("tab", name="Mappings & plan").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Policies")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-policies")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Mappings & plan")).to_be_focused()


def test_policies_can_be_reordered_and_reconcile_runs(page: Page):
    open_tab(page, "Policies")
    page.get_by_role("button", name="New policy").click()
    page.get_by_label("Name *", exact=True).fill("scratch")
    page.locator("#policy-form-match-name_glob").fill("scratch-*")
    page.locator("#policy-form-ladder").locator("..").get_by_role("combobox").select_option("exclude")
    page.get_by_role("button", name="Add").click()
    page.get_by_role("button", name="Create policy").click()
    rows = page.locator("#view-policies > table tbody tr")
    expect(rows.last).to_contain_text("scratch")
    page.get_by_role("button", name="move scratch up").click()
    expect(page.locator("#status")).to_contain_text("Moved 'scratch' up")
    expect(rows.first).to_contain_text("scratch")
    open_tab(page, "Runs")
    page.get_by_role("button", name="Reconcile now").click()
    expect(page.locator("#status")).to_contain_text("Reconcile: 0 undone", timeout=30_000)


def test_the_page_signs_in_with_the_truenas_ui_session_when_it_has_one(browser, ui_url: str, shot):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # What the TrueNAS web UI leaves for a page of the same site (ngx-webstorage, key "token").
    context.add_init_script(f"localStorage.setItem('ngx-webstorage|token', JSON.stringify('{UI_TOKEN}'))")
    page = context.new_page()
    page.goto(ui_url)
    page.get_by_role("tab", name="Mappings & plan").wait_for()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("TrueNAS session")
    shot(page, "signed-in-with-the-ui-session")
    context.close()


def test_without_a_ui_session_the_sign_in_form_is_shown(browser, ui_url: str):
    context = browser.new_context()
    context.add_init_script("localStorage.setItem('ngx-webstorage|token', JSON.stringify('expired'))")
    page = context.new_page()
    page.goto(ui_url)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    context.close()


def test_the_plugin_serves_only_the_pages_files_with_strict_headers(ui_url: str):
    import urllib.error
    import urllib.request
    with urllib.request.urlopen(ui_url) as answer:   # noqa: S310 - the test's own 127.0.0.1 server
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "__init__.py", "nothing-here.js"):
        try:
            urllib.request.urlopen(ui_url + path)   # noqa: S310
        except urllib.error.HTTPError as refused:
            assert refused.code == 404, path
        else:
            raise AssertionError(f"{path} was served")
