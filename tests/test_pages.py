"""The portal's pages as a person reads them: error pages in the portal's look that say what
happened and what to do, one voice (sentence case) on every page, allauth's among them, and a
second-factor prompt that offers only what the account has."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases.models import Database, Membership
from tests.conftest import client_for, database_records, make_account, reauthenticate, sign_in
from tests.helpers import add_security_key

STYLESHEET = '<link rel="stylesheet" href="/static/tenantry/portal.css">'


def test_a_missing_page_says_so_in_the_portals_look(alice: User) -> None:
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert STYLESHEET in page
    assert "There is nothing at this address" in page
    assert '<a href="/">Go to the home page</a>' in page
    # Signed in, it leads back to the databases.
    page = client_for(alice).get("/databases/nosuchdb/users/").content.decode()
    assert "There is nothing at this address" in page
    assert '<a href="/databases/">Go to my databases</a>' in page


def test_a_missing_page_inside_a_database_keeps_the_databases_look(owner: User) -> None:
    # The portal's URLs do not resolve on a database's host: the workspace's look is used.
    database_records(owner, 1, "acme")
    response = Client(HTTP_HOST="acme-0.localhost").get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert STYLESHEET in page
    assert '<a class="brand" href="/">acme-0</a>' in page
    assert '<a href="/">Go to the home page of “acme-0”</a>' in page


def test_a_member_who_does_not_administer_a_database_is_told_who_can(owner: User) -> None:
    database_records(owner, 1, "acme")
    member = make_account("member@example.com")
    Membership.objects.create(
        database=Database.objects.get(name="acme-0"), user=member, role=Membership.Role.USER
    )
    response = client_for(member).get("/databases/acme-0/users/")
    assert response.status_code == 403
    page = response.content.decode()
    assert STYLESHEET in page
    assert "Only the database&#x27;s administrators can manage it." in page
    assert "An administrator of the database can give you access." in page
    assert '<a href="/databases/">Go to my databases</a>' in page


def test_a_form_sent_with_an_old_token_says_to_reload_it(db: None) -> None:
    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"login": "a@b.c"})
    assert response.status_code == 403
    page = response.content.decode()
    assert STYLESHEET in page
    assert "This form has expired" in page and "reload the page" in page


def test_the_server_error_page_needs_no_request() -> None:
    # Django renders it with no context at all: a broken request or database must not break it.
    page = render_to_string("500.html")
    assert STYLESHEET in page
    assert "Something went wrong" in page
    assert '<a href="/">the home page</a>' in page


def test_an_unknown_database_host_gets_the_portals_look_without_a_query(db: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = Client(HTTP_HOST="not_a_label.localhost").get("/")
    assert response.status_code == 404
    assert len(queries) == 0  # a name no database can have costs no lookup
    portal = settings.PORTAL_URL
    for name, sentence in [
        ("not_a_label", "There is nothing at this address."),
        ("nosuchdb", "There is no database “nosuchdb”."),
    ]:
        response = Client(HTTP_HOST=f"{name}.localhost").get("/contacts/")
        assert response.status_code == 404
        page = response.content.decode()
        # The stylesheet comes from the portal: this host serves nothing, not even it.
        assert f'<link rel="stylesheet" href="{portal}/static/tenantry/portal.css">' in page
        assert sentence in page
        assert f'<a href="{portal}">Go to Tenantry</a>' in page


def test_an_expired_database_host_gets_the_portals_look(owner: User) -> None:
    database_records(owner, 1, "acme")
    Database.objects.filter(name="acme-0").update(expires_at=timezone.now() - timedelta(days=1))
    response = Client(HTTP_HOST="acme-0.localhost").get("/")
    assert response.status_code == 403
    page = response.content.decode()
    assert f'href="{settings.PORTAL_URL}/static/tenantry/portal.css"' in page
    assert "This database has expired" in page
    assert f'<a href="{settings.PORTAL_URL}">Go to Tenantry</a>' in page


def second_factor_prompt(user: User) -> str:
    client = Client()
    sign_in(client, user.email)  # the password: the prompt comes next
    response = client.get("/accounts/2fa/authenticate/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_second_factor_prompt_offers_a_security_key_only_to_an_account_with_one(
    alice: User, bob: User
) -> None:
    TOTP.activate(alice, generate_totp_secret())
    page = second_factor_prompt(alice)
    assert "authenticator code" in page
    assert "security key" not in page.lower()
    assert "Cancel" in page  # the way out remains

    TOTP.activate(bob, generate_totp_secret())
    add_security_key(bob)
    page = second_factor_prompt(bob)
    assert "authenticator code" in page
    assert "Use a security key" in page


class Words(HTMLParser):
    """The words a person reads as names of things: the title, headings, buttons, links,
    labels, table headers and placeholders."""

    TAGS = {"title", "h1", "h2", "h3", "button", "a", "label", "summary", "th", "legend"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[list[str]] = []
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.TAGS:
            self.open.append([tag, ""])
        if placeholder := dict(attrs).get("placeholder"):
            self.found.append(placeholder)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1][0] == tag:
            self.found.append(" ".join(self.open.pop()[1].split()))

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element[1] += data


# A capitalized word after the first one of a name ("Confirm Email Address"); acronyms ("IP")
# and the product's name are not Title Case.
TITLE_CASE = re.compile(r"(?<=\s)(?<![.!?:·] )(?!Tenantry\b)[A-Z][a-z]+\b")


def test_every_page_speaks_in_sentence_case(alice: User) -> None:
    database_records(alice, 1, "acme")
    alice.developer_mode = True  # the security page's API keys, and the new key's page
    alice.save()
    TOTP.activate(make_account("bob@example.com"), generate_totp_secret())
    anonymous = Client()
    pending = Client()
    sign_in(pending, "bob@example.com")  # at the second-factor prompt
    signed_in = client_for(alice)
    pages = [
        (anonymous, "/accounts/login/"),
        (anonymous, "/accounts/signup/"),
        (anonymous, "/accounts/confirm-email/"),
        (anonymous, "/accounts/confirm-email/no-such-key/"),
        (anonymous, "/accounts/password/reset/"),
        (anonymous, "/accounts/password/reset/done/"),
        (anonymous, "/accounts/password/reset/key/1-no-such-key/"),
        (anonymous, "/no/such/page/"),
        (pending, "/accounts/2fa/authenticate/"),
        (signed_in, "/databases/"),
        (signed_in, "/databases/restore/"),
        (signed_in, "/databases/acme-0/users/"),
        (signed_in, "/databases/acme-0/duplicate/"),
        (signed_in, "/databases/acme-0/backups/"),
        (signed_in, "/databases/acme-0/rename/"),
        (signed_in, "/invitations/no-such-token/"),
        (signed_in, "/subscriptions/"),
        (signed_in, "/account/"),
        (signed_in, "/account/security/"),
        (signed_in, "/accounts/reauthenticate/"),
        (signed_in, "/accounts/logout/"),
        (signed_in, "/accounts/password/change/"),
        (signed_in, "/accounts/2fa/"),
        (signed_in, "/accounts/2fa/webauthn/"),
        ("reauthenticated", "/accounts/2fa/totp/activate/"),
        ("reauthenticated", "/accounts/2fa/webauthn/add/"),
        ("reauthenticated", "/account/delete/"),
        ("reauthenticated", "/databases/acme-0/delete/"),
        ("reauthenticated", "/databases/acme-0/restore/"),
        ("reauthenticated", "/account/security/api-keys/new/"),
    ]
    title_case = []
    for client, path in pages:
        if client == "reauthenticated":
            reauthenticate(signed_in)
            client = signed_in
        assert isinstance(client, Client)
        response = client.get(path)
        assert response.status_code in (200, 400, 404), (path, response.status_code)
        words = Words()
        words.feed(response.content.decode())
        title_case += [f"{path}: {name}" for name in words.found if TITLE_CASE.search(name)]
    assert title_case == []
