"""The Restore view in Chromium against the real plugin services (tests/ui/server.py): a
coordinated snapshot, its preview (each VM and what it is restored to), a restore job with
its progress, the restore listed, a cleanup after its confirmation (forced, after a second
one, when the copy is on); the API's errors on the fields they name."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def take_a_coordinated_snapshot(page: Page) -> None:
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#status")).to_contain_text("taken", timeout=60_000)


def preview(page: Page):
    page.get_by_role("tab", name="Restore").click()
    page.get_by_role("button", name="Find snapshots").click()
    expect(page.locator("#status")).to_contain_text("coordinated snapshots of")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#status")).to_contain_text("nothing was made")
    return page.locator(".restore-vms tbody tr")


def test_restore_a_vm_from_the_preview_then_clean_it_up(page: Page, scenario, shot):
    app = f"{scenario['datastore']}-app-01"
    take_a_coordinated_snapshot(page)
    rows = preview(page)
    expect(rows).to_have_count(3)
    row = rows.filter(has_text=app)
    expect(row).to_contain_text("revert to VMware snapshot")
    expect(row.locator("code")).to_have_text(re.compile(r"^truenas-vmware-coord:"))
    expect(row).to_contain_text("restorable")
    expect(row).to_contain_text(f"{app}-restored-<restore id>")
    expect(row).to_contain_text("(over NFS)")
    # The passthrough VM was crash-consistent: no VMware snapshot, the clone's disks are the point.
    expect(rows.filter(has_text="gpu-01")).to_contain_text("the clone's disks are the point")
    shot(page, "restore-preview")

    page.get_by_label(f"restore {app}").check()
    page.get_by_label("New name").fill(f"{scenario['datastore']}-app-02")   # a VM of that name exists
    page.get_by_role("button", name="Restore", exact=True).click()
    new_name = page.locator("[data-field='new_name']")
    expect(new_name.locator(".error")).to_contain_text("exists already")
    expect(page.locator("#restore-new-name")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("New name").fill(f"{app}-copy")
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.locator("#status")).to_contain_text(f"Restored {app} as {app}-copy", timeout=60_000)
    expect(page.locator("#restore-progress")).to_have_attribute("value", "100")
    expect(page.locator("#restore-progress-text")).to_contain_text("restored")
    listed = page.get_by_role("table", name="Restores").locator("tbody tr").filter(has_text=f"{app}-copy")
    expect(listed).to_contain_text("restored")
    shot(page, "restore-done")

    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    listed.get_by_role("button", name=re.compile("^Cleanup")).click()
    expect(page.locator("#status")).to_contain_text("cleaned up: nothing of it is left", timeout=60_000)
    assert dialogs and "clone" in dialogs[0]
    expect(listed).to_contain_text("cleaned")
    expect(listed.get_by_role("button", name=re.compile("^Cleanup"))).to_have_count(0)
    shot(page, "restore-cleaned")


def test_a_copy_that_is_on_needs_a_forced_cleanup_after_a_second_confirmation(page: Page, scenario):
    app = f"{scenario['datastore']}-app-02"
    take_a_coordinated_snapshot(page)
    preview(page)
    page.get_by_label(f"restore {app}").check()
    page.get_by_label("Power on").check()
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.locator("#status")).to_contain_text(f"Restored {app}", timeout=60_000)
    listed = page.get_by_role("table", name="Restores").locator("tbody tr").filter(has_text=app).filter(
        has_text="restored")
    # Attach-disk: the API's error on the field it names.
    page.get_by_label("Attach to VM").fill("nosuch")
    page.get_by_role("button", name="Attach disk").click()
    expect(page.locator("[data-field='to'] .error")).to_contain_text("no VM named 'nosuch'")
    expect(page.locator("#attach-to")).to_have_attribute("aria-invalid", "true")
    page.on("dialog", lambda d: d.accept())
    listed.get_by_role("button", name=re.compile("^Cleanup")).click()
    expect(listed).to_contain_text("poweredOn")
    listed.get_by_role("button", name="Force cleanup").click()
    expect(page.locator("#status")).to_contain_text("cleaned up: nothing of it is left", timeout=60_000)
