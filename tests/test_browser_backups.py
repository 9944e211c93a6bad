"""Backups in a real browser: the backups page lists a daily backup, which downloads and
restores into a new database; a ZIP uploaded from the manager is checked (a wrong file gets
its sentence), then restored, with live progress to the end."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from pytest_django.live_server_helper import LiveServer

from tenantry.backups import store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.workspace import releases, tenant
from tests.browser import (
    TIMEOUT_MS,
    Console,
    Worker,
    confirm_password,
    htmx_polls,
    manage,
    sign_in,
    watch_until_done,
)
from tests.conftest import make_account

pytestmark = pytest.mark.slow

EMAIL = "erin@example.com"


def test_download_and_restore_backups_in_the_portal(
    live_server: LiveServer,
    browser: Browser,
    worker: Worker,
    tmp_path: Path,
) -> None:
    base = live_server.url
    expect.set_options(timeout=TIMEOUT_MS)
    console = Console()
    account = make_account(EMAIL)
    acme = lifecycle.create("acme", by=account)
    Contact = releases.model(acme.release, "Contact")
    with tenant.using(acme) as db:
        Contact.objects.using(db).create(name="Grace Hopper")
    daily = store.make(acme, Backup.Kind.DAILY)

    context = console.watch(browser.new_context(accept_downloads=True))
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    polls = htmx_polls(page)
    sign_in(page, base, EMAIL)
    expect(page).to_have_url(f"{base}/databases/")

    # Manage → Backups: the daily backup, with its date and size.
    manage(page, "acme", "Backups")
    expect(page).to_have_url(f"{base}/databases/acme/backups/")
    row = page.locator(f"#backup-{daily.pk}")
    expect(row).to_contain_text(f"{daily.created_at:%Y-%m-%d %H:%M} UTC")
    expect(row).to_contain_text("Daily")
    expect(row).to_contain_text(re.compile(r"\d+(\.\d)?\s(bytes|KB)"))
    with page.expect_download() as download_info:
        row.get_by_role("link", name="Download").click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    assert saved.name.startswith("acme_") and zipfile.ZipFile(saved).testzip() is None

    # Restore it into a new database.
    row.get_by_role("link", name="Restore").click()
    confirm_password(page, base)  # restoring over a database replaces it
    expect(page.get_by_role("heading", name="Restore “acme”")).to_be_visible()
    page.get_by_label("Into a new database").check()
    page.get_by_label("Name of the new database").fill("acme-restored")
    page.get_by_role("button", name="Restore").click()
    expect(page).to_have_url(re.compile(re.escape(f"{base}/operations/") + r"\d+/$"))
    worker.start()
    watch_until_done(page, polls)
    restored = Database.objects.get(name="acme-restored")
    status = page.locator("#progress .status")
    expect(status).to_contain_text(f"“acme-restored” is restored at {restored.url}.")

    # From the manager: a file that is no backup is refused with its sentence, nothing made.
    page.get_by_role("link", name="Back to my databases").click()
    page.get_by_role("link", name="Restore a backup").click()
    expect(page).to_have_url(f"{base}/databases/restore/")
    wrong = tmp_path / "notes.zip"
    wrong.write_text("not a zip")
    page.get_by_label("Backup ZIP").set_input_files(str(wrong))
    page.get_by_label("Name of the new database").fill("acme-up")
    page.get_by_role("button", name="Restore").click()
    expect(page.locator(".errorlist")).to_contain_text("This file is not a readable ZIP")
    assert not Database.objects.filter(name="acme-up").exists()

    # The downloaded ZIP, as moved: the new database has the backup's identity.
    page.get_by_label("Backup ZIP").set_input_files(str(saved))
    page.get_by_label("Name of the new database").fill("acme-up")
    page.get_by_label("As moved").check()
    page.get_by_role("button", name="Restore").click()
    watch_until_done(page, polls)
    moved = Database.objects.get(name="acme-up")
    assert moved.uuid == acme.uuid
    Contact = releases.model(moved.release, "Contact")
    with tenant.using(moved) as db:
        assert list(Contact.objects.using(db).values_list("name", flat=True)) == ["Grace Hopper"]
    page.get_by_role("link", name="Back to my databases").click()
    for name in ("acme", "acme-restored", "acme-up"):
        expect(page.locator(f"#db-{name} .badge")).to_have_text("Trial: 15 days left")
    assert console.errors == [], console.errors
