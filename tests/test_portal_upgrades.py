"""Upgrades in the portal: the offer in the manager (an action with its deadline below the
latest major, a quiet note for a newer minor, a badge when the automatic upgrade failed), the
upgrade page (test or production, refusals as form errors), the operation's link to its
report, and the report page, with who may read it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Membership
from tenantry.operations.models import Operation
from tenantry.releases import models as releases
from tenantry.releases.models import Upgrade, add_months
from tenantry.workspace import tenant
from tenantry.workspace.releases import RELEASES, model
from tests.conftest import client_for, make_account
from tests.helpers import run_pending
from tests.planted import MIGRATIONS, PLANTED

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)

# 2.0 came out a week ago: databases below it must be upgraded two months after.
PUBLISHED_2_0 = timezone.now() - timedelta(days=7)


def publish(*versions: str, when: datetime | None = None) -> None:
    for version in versions:
        releases.publish(version, when or timezone.now() - timedelta(minutes=1))


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    """A database at 1.1 with three contacts; the owner administers it, the member uses it."""
    publish("1.0", "1.1")
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    contact = model("1.1", "Contact")
    with tenant.using(database) as db:
        contact.objects.using(db).bulk_create(
            [
                contact(name="Ada", email="ada@acme.com", company="Acme"),
                contact(name="Bob", email="bob@acme.com", company="Acme"),
                contact(name="Cy", email="cy@other.org", company="Other"),
            ]
        )
    return database


@pytest.fixture
def planted(settings: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only release 9.0, which fails midway."""
    settings.MIGRATION_MODULES = {"workspace": MIGRATIONS}  # type: ignore[attr-defined]
    for version, migration in PLANTED.items():
        monkeypatch.setitem(RELEASES, version, migration)


def manager(user: User) -> str:
    return client_for(user).get("/databases/").content.decode()


def test_below_the_latest_major_administrators_get_the_upgrade_with_its_deadline(
    shop: Database, owner: User, member: User
) -> None:
    publish("2.0", when=PUBLISHED_2_0)
    deadline = add_months(PUBLISHED_2_0, 2)
    page = manager(owner)
    assert (
        '<a href="/databases/shop/upgrade/" class="badge warn">'
        f"Upgrade to 2.0 by {deadline:%Y-%m-%d}</a>"
    ) in page
    assert "available" not in page
    # Only administrators may upgrade.
    assert "/databases/shop/upgrade/" not in manager(member)


def test_at_the_latest_major_a_newer_minor_is_only_mentioned(engine_kind: str, owner: User) -> None:
    publish("1.0", "1.1", "2.0")
    lifecycle.create("shop", by=owner)  # at 2.0
    assert "/databases/shop/upgrade/" not in manager(owner)  # nothing newer yet
    publish("2.1")
    page = manager(owner)
    assert '<a href="/databases/shop/upgrade/" class="muted">2.1 available</a>' in page
    assert "Upgrade to" not in page


def test_a_failed_automatic_upgrade_shows_a_badge_instead_of_the_offer(
    shop: Database, owner: User, member: User
) -> None:
    publish("2.0", when=PUBLISHED_2_0)
    Database.objects.filter(pk=shop.pk).update(upgrade_failed_at=timezone.now())
    for user in (owner, member):
        page = manager(user)
        assert (
            '<a href="/support/new/?database=shop&amp;category=technical&amp;'
            'subject=Automatic+upgrade+failed" class="badge danger">'
            "Upgrade failed: contact support</a>"
        ) in page
        assert "Upgrade to" not in page


def test_the_manager_links_administrators_to_the_last_upgrade_report(
    shop: Database, owner: User, member: User
) -> None:
    publish("2.0")
    client_for(owner).post("/databases/shop/upgrade/", {"release": "2.0", "kind": "test"})
    run_pending()
    client_for(owner).post("/databases/shop/upgrade/", {"release": "2.0", "kind": "production"})
    last = Upgrade.objects.get(test=False)
    link = f'<a href="/upgrades/{last.pk}/">Upgrade report</a>'
    assert link in manager(owner)
    assert "/upgrades/" not in manager(member)


def test_the_upgrade_page_is_for_administrators_only(
    shop: Database, owner: User, member: User, outsider: User
) -> None:
    publish("2.0", when=PUBLISHED_2_0)
    publish("2.1")
    response = client_for(owner).get("/databases/shop/upgrade/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "It is at release <strong>1.1</strong>." in page
    assert 'value="2.0" required id="id_release_0">' in page
    assert 'value="2.1" required id="id_release_1" checked>' in page and "2.1 (latest)" in page
    assert f"by <strong>{add_months(PUBLISHED_2_0, 2):%Y-%m-%d}</strong>" in page
    assert "the copy expires in 15 days" in page and "backs “shop” up first" in page
    assert '<button type="submit" name="kind" value="test">Test upgrade</button>' in page
    for data in ({}, {"release": "2.1", "kind": "production"}):
        assert client_for(member).get("/databases/shop/upgrade/").status_code == 403
        assert client_for(member).post("/databases/shop/upgrade/", data).status_code == 403
        assert client_for(outsider).get("/databases/shop/upgrade/").status_code == 404
        assert client_for(outsider).post("/databases/shop/upgrade/", data).status_code == 404
    assert not Operation.objects.exists()


def test_at_the_latest_release_the_page_says_so(engine_kind: str, owner: User) -> None:
    lifecycle.create("shop", by=owner)
    page = client_for(owner).get("/databases/shop/upgrade/").content.decode()
    assert "It is at the latest release: there is nothing to upgrade to." in page
    assert "<form" not in page.split("<main")[1]


def test_a_test_upgrade_upgrades_a_copy_and_its_report_offers_the_upgrade_in_one_click(
    shop: Database, owner: User
) -> None:
    publish("2.0")
    client = client_for(owner)
    response = client.post("/databases/shop/upgrade/", {"release": "2.0", "kind": "test"})
    operation = Operation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/operations/{operation.pk}/"
    assert (operation.kind, operation.params["test"]) == ("upgrade", True)
    # While it runs, the operation page has no report to show yet.
    assert "Read the upgrade report" not in client.get(response["Location"]).content.decode()
    run_pending()
    report = Upgrade.objects.get()
    page = client.get(response["Location"]).content.decode()
    assert f'<a href="/upgrades/{report.pk}/" id="report">Read the upgrade report</a>' in page

    copy = Database.objects.get(name="shop-upgrade-2-0")
    page = client.get(f"/upgrades/{report.pk}/").content.decode()
    assert "Test upgrade of “shop” to 2.0" in page
    assert "<strong>Succeeded</strong> in " in page
    assert "“shop” itself was not changed" in page
    assert f'<a href="{copy.url}">{copy.url}</a>' in page
    assert f"until {copy.expires_at:%Y-%m-%d}" in page
    assert f"<dd>{owner.email}</dd>" in page and "<dd>1.1 → 2.0</dd>" in page
    assert "<li>0003_release_2_0</li>" in page
    assert (
        "<td>workspace_contact</td>\n"
        '        <td data-label="Before">3</td>\n'
        '        <td data-label="After">3</td>'
    ) in page
    assert (
        "<td>workspace_company</td>\n"
        '        <td data-label="Before">–</td>\n'
        '        <td data-label="After">2</td>'
    ) in page
    # The upgrade itself, one click away: the same release, to the upgrade page.
    assert '<form method="post" action="/databases/shop/upgrade/"' in page
    assert '<input type="hidden" name="release" value="2.0">' in page
    assert 'name="csrfmiddlewaretoken"' in page
    shop.refresh_from_db()
    assert shop.release == "1.1"

    response = client.post("/databases/shop/upgrade/", {"release": "2.0", "kind": "production"})
    production = Operation.objects.get(kind="upgrade", params__test=False)
    assert response["Location"] == f"/operations/{production.pk}/"
    run_pending()
    shop.refresh_from_db()
    assert shop.release == "2.0"
    page = client.get(response["Location"]).content.decode()
    assert "“shop” is at release 2.0." in page
    # Done: the test report offers nothing more.
    assert "<form" not in client.get(f"/upgrades/{report.pk}/").content.decode().split("<main")[1]
    page = client.get(f"/upgrades/{production.upgrade.pk}/").content.decode()  # type: ignore[attr-defined]
    assert "Upgrade of “shop” to 2.0" in page and "Test copy" not in page


def test_a_production_upgrade_starts_from_the_page(shop: Database, owner: User) -> None:
    publish("2.0", "2.1")
    response = client_for(owner).post(
        "/databases/shop/upgrade/", {"release": "2.1", "kind": "production"}
    )
    operation = Operation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/operations/{operation.pk}/"
    assert operation.params == {"release": "2.1", "test": False, "automatic": False}
    run_pending()
    shop.refresh_from_db()
    assert shop.release == "2.1"
    assert not Database.objects.filter(name__startswith="shop-upgrade").exists()


def test_a_failed_upgrade_reports_the_step_and_its_message(
    shop: Database, owner: User, planted: None
) -> None:
    publish("2.0", "2.1", "9.0")
    client_for(owner).post("/databases/shop/upgrade/", {"release": "9.0", "kind": "production"})
    run_pending()
    report = Upgrade.objects.get()
    page = client_for(owner).get(f"/upgrades/{report.pk}/").content.decode()
    assert "<strong>Failed</strong> at the step 0005_planted_failure after " in page
    assert ": the planted release fails here</p>" in page
    assert "“shop” was left exactly as it was, at release 1.1." in page
    assert '<li>0005_planted_failure <span class="badge danger">failed</span></li>' in page
    assert 'name="release"' not in page  # a failed upgrade offers nothing to do


def test_refusals_show_their_sentence_and_change_nothing(shop: Database, owner: User) -> None:
    publish("2.0")
    client = client_for(owner)
    # 2.1 exists but is not published: posted by hand, the verb refuses it.
    response = client.post("/databases/shop/upgrade/", {"release": "2.1", "kind": "production"})
    assert response.status_code == 200
    assert "Release 2.1 is not published yet." in response.content.decode()
    refused = Activity.objects.get(database=shop, kind="upgrade")
    assert (refused.result, refused.reason) == ("refused", "Release 2.1 is not published yet.")

    # Busy: a duplicate waits for the worker.
    lifecycle.start_duplicate(shop, "shop-copy", for_testing=True, by=owner)
    response = client.post("/databases/shop/upgrade/", {"release": "2.0", "kind": "test"})
    assert response.status_code == 200
    assert "Another operation is already running" in response.content.decode()
    assert list(Operation.objects.values_list("kind", flat=True)) == ["duplicate"]
    assert not Database.objects.filter(name="shop-upgrade-2-0").exists()
    assert not Upgrade.objects.exists()
    shop.refresh_from_db()
    assert shop.release == "1.1"


def test_the_report_is_for_the_administrators_and_the_one_who_asked(
    shop: Database, owner: User, member: User, outsider: User
) -> None:
    publish("2.0")
    # The member, an administrator when asking, is one no longer.
    Membership.objects.filter(database=shop, user=member).update(role=Membership.Role.ADMIN)
    client_for(member).post("/databases/shop/upgrade/", {"release": "2.0", "kind": "test"})
    Membership.objects.filter(database=shop, user=member).update(role=Membership.Role.USER)
    run_pending()
    report = Upgrade.objects.get()
    path = f"/upgrades/{report.pk}/"
    assert client_for(owner).get(path).status_code == 200
    page = client_for(member).get(path).content.decode()
    assert "<strong>Succeeded</strong>" in page
    assert 'name="release"' not in page  # no longer an administrator: nothing to click
    assert client_for(outsider).get(path).status_code == 404
    user = make_account("user@example.com")  # a user who did not ask
    Membership.objects.create(database=shop, user=user, role=Membership.Role.USER)
    assert client_for(user).get(path).status_code == 404
    assert client_for(user).get("/upgrades/99999/").status_code == 404
    # An administrator of the test copy alone reads it too.
    copy = Database.objects.get(name="shop-upgrade-2-0")
    Membership.objects.create(database=copy, user=outsider, role=Membership.Role.ADMIN)
    assert client_for(outsider).get(path).status_code == 200

    # The database deleted, the one who asked still reads it.
    lifecycle.start_delete(shop, by=owner)
    run_pending()
    assert not Database.objects.filter(pk=shop.pk).exists()
    page = client_for(member).get(path).content.decode()
    assert "Test upgrade of “shop” to 2.0" in page
    assert client_for(user).get(path).status_code == 404


def test_the_operation_page_links_the_report_only_for_those_who_may_read_it(
    shop: Database, owner: User, member: User
) -> None:
    publish("2.0")
    client_for(owner).post("/databases/shop/upgrade/", {"release": "2.0", "kind": "production"})
    run_pending()
    path = f"/operations/{Operation.objects.get().pk}/"
    assert "Read the upgrade report" in client_for(owner).get(path).content.decode()
    page = client_for(member).get(path).content.decode()
    assert "Done." in page and "Read the upgrade report" not in page


def test_the_upgrade_needs_the_csrf_token(shop: Database, owner: User) -> None:
    publish("2.0")
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    data = {"release": "2.0", "kind": "production"}
    assert client.post("/databases/shop/upgrade/", data).status_code == 403
    assert not Operation.objects.exists()
    client.get("/databases/shop/upgrade/")  # sets the CSRF cookie, as a browser gets it
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    assert client.post("/databases/shop/upgrade/", data).status_code == 302
    assert Operation.objects.get().kind == "upgrade"
