"""Attacks from outside and from signed-in customers, each tried against the real thing: a
former member's database password, a workspace session guessing the account's password, mailed
links pointed elsewhere by the Host header, a removed user brought back by a staging refresh."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tenantry.accounts.models import User
from tenantry.billing import projects
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Activity, Database, Invitation
from tenantry.engines.fleet import engine_for
from tests.conftest import PASSWORD, client_for, make_account, reauthenticate
from tests.helpers import DB_PASSWORD, run_pending, set_db_password, sign_in_db, visitor

PORTAL = "http://127.0.0.1:8000"  # TENANTRY_PORTAL_URL in the tests


def join(database: Database, account: User, role: str = "user") -> None:
    """`account` accepts an invitation to `database`, as its link does."""
    invitation = Invitation(database=database, email=account.email, role=role)
    invitation.new_token()
    invitation.save()
    members.accept(invitation, account)


@pytest.fixture
def acme(owner: User, engine_kind: str) -> Database:
    return lifecycle.create("acme", by=owner)


# A member who deletes their account is out of its databases: the database password they had
# set there opened the database still, while its administrators no longer saw them on Users.


def test_a_deleted_account_no_longer_opens_its_databases_with_its_database_password(
    acme: Database, member: User
) -> None:
    join(acme, member)
    set_db_password(acme, member.email, DB_PASSWORD)
    assert sign_in_db(visitor("acme"), member.email, DB_PASSWORD) == "/"
    session = visitor("acme")
    assert sign_in_db(session, member.email, DB_PASSWORD) == "/"

    portal = client_for(member)
    reauthenticate(portal)
    response = portal.post("/account/delete/", {"confirm": member.email})
    assert response.status_code == 302
    assert not User.objects.filter(email=member.email).exists()

    assert sign_in_db(visitor("acme"), member.email, DB_PASSWORD) == "Wrong login or password."
    assert session.get("/").status_code == 302  # its session there ends too
    entry = Activity.objects.filter(database=acme, kind="remove").get()
    assert entry.detail == "member@example.com: the account was deleted"


def test_an_account_stays_while_a_database_of_its_cannot_be_reached(
    acme: Database, member: User
) -> None:
    join(acme, member)
    engine_for(acme).drop(acme.physical_name)  # its storage gone: nothing to open
    portal = client_for(member)
    reauthenticate(portal)
    response = portal.post("/account/delete/", {"confirm": member.email})
    assert response.status_code == 200
    assert "“acme” cannot be reached right now" in response.content.decode()
    assert User.objects.filter(email=member.email).exists()
    assert portal.get("/account/").status_code == 200  # still signed in


# A session of the database (opened with a database password someone shared, or left open)
# guessed the account's password on My Preferences, without limit.


def test_my_preferences_is_no_way_to_guess_the_account_password(
    acme: Database, member: User
) -> None:
    join(acme, member)
    set_db_password(acme, member.email, DB_PASSWORD)
    session = visitor("acme")
    assert sign_in_db(session, member.email, DB_PASSWORD) == "/"

    def clear(password: str) -> str:
        data = {"action": "clear", "current_password": password}
        return session.post("/preferences/", data).content.decode()

    for guess in range(5):
        assert "This is not your current password." in clear(f"guess {guess}")
    assert "Too many failed attempts. Try again in 5 minutes." in clear(PASSWORD)
    assert "Too many failed attempts" in clear(DB_PASSWORD)
    # They count with the sign-in's failures, from that address.
    refused = sign_in_db(visitor("acme"), member.email, DB_PASSWORD)
    assert refused == "Too many failed attempts. Try again in 5 minutes."


# The links of the account's mails were built from the Host header: any of the portal's hosts
# with any port ("localhost:6666") took the reset link to an address of the attacker's choosing.


def links(body: str) -> list[str]:
    return [link.rstrip(".,") for link in re.findall(r"https?://\S+", body)]


@pytest.mark.parametrize("host", ["localhost:6666", "127.0.0.1:1"])
def test_mailed_links_are_at_the_portal_whatever_the_host_header(
    db: None, host: str, mailoutbox: Any
) -> None:
    make_account("victim@example.com")
    client = Client(HTTP_HOST=host)
    client.post("/accounts/password/reset/", {"email": "victim@example.com"})
    client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    client.post(
        "/accounts/signup/",
        {
            "email": "victim@example.com",
            "password1": "a fine long passphrase 9",
            "password2": "a fine long passphrase 9",
        },
    )
    client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a fine long passphrase 9",
            "password2": "a fine long passphrase 9",
        },
    )
    subjects = [m.subject for m in mailoutbox]
    assert len(mailoutbox) == 4, subjects
    found = [link for mail in mailoutbox for link in links(mail.body)]
    assert any("/accounts/password/reset/key/" in link for link in found)
    assert any("/accounts/confirm-email/" in link for link in found)
    assert all(link == PORTAL or link.startswith(PORTAL + "/") for link in found), found


# A staging refresh copied production's users in as they were: someone the partner removed from
# the staging database got in again with their account password.


def test_a_refresh_does_not_bring_back_a_user_removed_from_staging(
    engine_kind: str, member: User
) -> None:
    partner = make_account("partner@example.com")
    call_command("partners", "add", partner.email, stdout=io.StringIO())
    partner.refresh_from_db()
    production = projects.start_project("acme", by=partner).production
    assert production is not None
    join(production, member)
    lifecycle.start_duplicate(production, "acme-staging", by=partner)
    run_pending()
    staging = Database.objects.get(name="acme-staging")
    assert sign_in_db(visitor("acme-staging"), member.email, PASSWORD) == "/"
    members.remove(staging, [member], by=partner)

    projects.start_refresh(staging, by=partner)
    run_pending()
    assert sign_in_db(visitor("acme-staging"), member.email, PASSWORD) == "Wrong login or password."
    assert sign_in_db(visitor("acme"), member.email, PASSWORD) == "/"  # production's own
    assert sign_in_db(visitor("acme-staging"), partner.email, PASSWORD) == "/"
