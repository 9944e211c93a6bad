"""Every page that tells a person to contact support links to the Contact support form,
pre-filled with the database (and what it is about) where there is one: the manager's rows,
the upgrade page, the subscribe page without plans, the gateway's page of an expired copy, My
Preferences inside a database (the login is changed only by support), and the report mailed
after a failed automatic upgrade. The last test reads the sources for any other such sentence.
"""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.releases import upgrade
from tenantry.releases.models import Upgrade
from tests.conftest import client_for
from tests.helpers import signed_in, visitor

# The links are the same whatever the engine: SQLite only.
sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)

FORM = "/support/new/"
UPGRADE_FAILED = "category=technical&subject=Automatic+upgrade+failed"
EXPIRED_COPY = "category=other&subject=Bring+back+an+expired+copy"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.found[self._href] = " ".join("".join(self._text).split())
            self._href = None


def links(page: str) -> dict[str, str]:
    """The page's links: each href (unescaped, as a browser follows it) with its text."""
    parser = _Links()
    parser.feed(page)
    return parser.found


def prefilled(client: Client, href: str) -> dict[str, str]:
    """What the form shows filled in, following `href` as the person would."""
    response = client.get(href)
    assert response.status_code == 200
    initial = response.context["form"].initial
    return {key: initial[key] for key in ("database", "category", "subject")}


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


@pytest.fixture
def expired_copy(shop: Database, owner: User, member: User) -> Database:
    """A copy of shop whose 15 days are over: a record is all the manager and the gateway read."""
    copy = Database.objects.create(
        name="shop-copy", physical_name="tn_shopcopy", engine=shop.engine, release=shop.release,
        status=Database.Status.ACTIVE, source=shop, expires_at=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    Membership.objects.create(database=copy, user=owner, role=Membership.Role.ADMIN)
    Membership.objects.create(database=copy, user=member, role=Membership.Role.USER)
    return copy


def manager(user: User) -> dict[str, str]:
    return links(client_for(user).get("/databases/").content.decode())


# The database manager


@sqlite
def test_each_manage_menu_has_contact_support_for_its_database(shop: Database, owner: User) -> None:
    found = manager(owner)
    assert found[f"{FORM}?database=shop"] == "Contact support"
    assert prefilled(client_for(owner), f"{FORM}?database=shop")["database"] == "shop"


@sqlite
def test_a_failed_automatic_upgrade_links_to_the_form_about_it(
    shop: Database, owner: User, member: User
) -> None:
    Database.objects.filter(pk=shop.pk).update(upgrade_failed_at=timezone.now())
    href = f"{FORM}?database=shop&{UPGRADE_FAILED}"
    for user in (owner, member):  # members see the badge too
        assert manager(user)[href] == "Upgrade failed: contact support"
    assert prefilled(client_for(member), href) == {
        "database": "shop",
        "category": "technical",
        "subject": "Automatic upgrade failed",
    }


@sqlite
def test_an_expired_copy_says_to_contact_support_with_a_link(
    expired_copy: Database, owner: User, member: User
) -> None:
    href = f"{FORM}?database=shop-copy&{EXPIRED_COPY}"
    for user in (owner, member):  # both read the sentence that says to
        page = client_for(user).get("/databases/").content.decode()
        assert "Contact support to bring it back." in page
        assert links(page)[href] == "Contact support"


# The portal's pages


@sqlite
def test_the_upgrade_page_links_a_failed_automatic_upgrade_to_the_form(
    shop: Database, owner: User
) -> None:
    Database.objects.filter(pk=shop.pk).update(upgrade_failed_at=timezone.now())
    page = client_for(owner).get("/databases/shop/upgrade/").content.decode()
    assert links(page)[f"{FORM}?database=shop&{UPGRADE_FAILED}"] == "contact support"


@sqlite
def test_the_subscribe_page_without_plans_links_to_a_billing_request(
    shop: Database, owner: User
) -> None:
    page = client_for(owner).get("/subscriptions/new/?database=shop").content.decode()
    assert "No plan is offered yet" in page
    href = f"{FORM}?database=shop&category=billing&subject=Subscribe"
    assert links(page)[href] == "contact support"
    assert prefilled(client_for(owner), href)["category"] == "billing"
    # Reached without a database, the request names none.
    page = client_for(owner).get("/subscriptions/new/").content.decode()
    assert links(page)[f"{FORM}?category=billing&subject=Subscribe"] == "contact support"


@sqlite
def test_the_report_of_a_failed_automatic_upgrade_mails_the_form_s_address(
    shop: Database, owner: User, mailoutbox: list
) -> None:
    report = Upgrade.objects.create(
        database=shop, database_name="shop", automatic=True, from_release="1.1",
        to_release="2.0", state=Upgrade.State.FAILED, error="It broke.",
        finished_at=timezone.now(),
    )  # fmt: skip
    upgrade.mail_report(report)
    url = f"{settings.PORTAL_URL}{FORM}?database=shop&{UPGRADE_FAILED}"
    assert f"Contact support: {url}\n" in mailoutbox[-1].body


# A database's own host: absolute links to the portal


@sqlite
def test_the_expired_copy_s_own_page_links_to_the_portal_s_form(expired_copy: Database) -> None:
    response = visitor("shop-copy").get("/")
    assert response.status_code == 403
    href = f"{settings.PORTAL_URL}{FORM}?database=shop-copy&{EXPIRED_COPY}"
    assert links(response.content.decode())[href] == "contact support"


@sqlite
def test_my_preferences_asks_support_to_change_the_login(shop: Database, owner: User) -> None:
    page = signed_in(shop, owner).get("/preferences/").content.decode()
    href = f"{settings.PORTAL_URL}{FORM}?database=shop&category=account&subject=Change+my+login"
    assert links(page)[href] == "contact support"
    assert prefilled(client_for(owner), href.removeprefix(settings.PORTAL_URL)) == {
        "database": "shop",
        "category": "account",
        "subject": "Change my login",
    }


# No other sentence says it without a link

ROOT = Path(settings.BASE_DIR)  # tenantry/
CONTACT = re.compile(r"contact\s+support", re.IGNORECASE)
ANCHOR = re.compile(r"<a\s[^>]*>.*?</a>", re.IGNORECASE | re.DOTALL)
HREF = re.compile(r'href="([^"]*)"')
# The form, by its URL name or path, or a placeholder the code fills with it (the manager's
# {support}, My Preferences' support_url): the tests above render each of those.
TO_FORM = re.compile(r"support_new|/support/new/|\{support\}|\{\{ support_url \}\}")
NEAR = 200  # a plain-text mail puts the address after the sentence, not around it
# The form's own page names it in its title and heading.
THE_FORM = ROOT / "templates" / "support" / "new.html"
# Database.expiry_refusal (see sentences()).
REFUSALS, EXEMPT = ROOT / "databases" / "models.py", "expiry_refusal"


def unlinked(text: str) -> list[str]:
    """What `text` says "contact support" in with no way to the form: not the text of a link
    to it, and not within NEAR characters of the form's URL."""
    linked = [
        m.span()
        for m in ANCHOR.finditer(text)
        if (href := HREF.search(m.group())) and TO_FORM.search(href.group(1))
    ]
    found = []
    for match in CONTACT.finditer(text):
        start, end = match.span()
        if any(a <= start and end <= b for a, b in linked):
            continue
        if TO_FORM.search(text[max(0, start - NEAR) : end + NEAR]):
            continue
        found.append(text[max(0, start - 60) : end + 20])
    return found


def sentences(path: Path) -> list[str]:
    """The strings of a module that a page, mail or API may say: not its docstrings (they
    document the code), and not Database.expiry_refusal's sentence: it is the refusal's text
    for the API and the CLI, with no page to link from (the manager links beside it)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))  # a docstring, if it is a string
        if path == REFUSALS and isinstance(node, ast.FunctionDef) and node.name == EXEMPT:
            skipped.update(id(inner) for inner in ast.walk(node))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in skipped
    ]


def test_no_page_or_mail_says_contact_support_without_a_link_to_the_form() -> None:
    offending = []
    for path in sorted((ROOT / "templates").rglob("*")):
        if path.is_file() and path != THE_FORM:
            offending += [f"{path}: {s!r}" for s in unlinked(path.read_text())]
    for path in sorted(ROOT.rglob("*.py")):
        for text in sentences(path):
            offending += [f"{path}: {s!r}" for s in unlinked(text)]
    assert offending == []
    # The exempted sentence is still there: if it changes, look at the exemption again.
    assert "Contact support to bring it back." in REFUSALS.read_text()
