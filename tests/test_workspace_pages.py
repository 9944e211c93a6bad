"""What every workspace page shows around its content: the way back to the portal for a
session opened with the account, the banner of a database that expires, and whom to ask to
change one's login (My Preferences: Tenantry's support, product.md section 2).

Requests go through the gateway (`<name>.localhost`), as a browser's would.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.operations.tasks import run_operation
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tests.conftest import client_for
from tests.helpers import (
    DB_PASSWORD,
    PORTAL_ORIGIN,
    connect_token,
    set_db_password,
    sign_in_db,
    signed_in,
    visitor,
)

MY_DATABASES = f'<a href="{settings.PORTAL_URL}/databases/">My databases</a>'


@pytest.fixture
def acme(owner: User, engine_kind: str) -> Database:
    return lifecycle.create("acme", by=owner)


def test_the_menu_links_to_my_databases_for_a_session_opened_with_the_account(
    acme: Database, owner: User
) -> None:
    # The account password.
    assert MY_DATABASES in signed_in(acme, owner).get("/contacts/").content.decode()
    # Connect.
    client = visitor("acme")
    token = connect_token(client_for(owner), "acme")
    assert client.post("/connect/", {"token": token}, HTTP_ORIGIN=PORTAL_ORIGIN).status_code == 302
    assert MY_DATABASES in client.get("/").content.decode()


def test_a_session_opened_with_a_database_password_has_no_link_to_the_portal(
    acme: Database, owner: User
) -> None:
    set_db_password(acme, owner.email, DB_PASSWORD)
    client = visitor("acme")
    assert sign_in_db(client, owner.email, DB_PASSWORD) == "/"
    page = client.get("/").content.decode()
    assert "Sign out" in page and "My databases" not in page
    assert "My databases" not in visitor("acme").get("/login/").content.decode()


def test_a_live_duplicate_shows_when_it_expires(acme: Database, owner: User) -> None:
    operation = lifecycle.start_duplicate(acme, "acme-copy", for_testing=False, by=owner)
    run_operation.call(operation.pk)
    copy = Database.objects.get(name="acme-copy")
    assert copy.expires_at is not None and not copy.is_test_copy
    banner = f'<p class="banner" role="status">This copy expires on {copy.expires_at:%Y-%m-%d}</p>'
    assert banner in signed_in(copy, owner).get("/").content.decode()
    assert banner in visitor("acme-copy").get("/login/").content.decode()
    assert 'class="banner"' not in signed_in(acme, owner).get("/").content.decode()


def test_my_preferences_sends_a_login_change_to_support_not_to_the_administrators(
    acme: Database, owner: User, member: User
) -> None:
    with tenant.using(acme) as db:
        ws.User.objects.using(db).filter(login=owner.email).update(contact_email="it@example.com")
        ws.User.objects.using(db).create(login=member.email, account_id=member.pk)
    page = signed_in(acme, member).get("/preferences/").content.decode()
    assert "Only Tenantry's support changes it: <a href=" in page
    assert f"{settings.PORTAL_URL}/support/new/?database=acme&amp;category=account" in page
    assert "mailto:" not in page  # the administrators cannot change it: no address of theirs
