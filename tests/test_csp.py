"""A strict Content-Security-Policy on every page a person can reach: the portal's (allauth's,
the support desk's and the admin's among them), a database's workspace, the gateway's own
pages, the error pages and the API's docs.

The policy allows no inline script (no 'unsafe-inline', no nonce, no 'unsafe-eval'), so every
page must work without one: each page's HTML is read for inline <script> elements, on*=
handlers, javascript: links, and inline styles (style-src has no 'unsafe-inline' either). A
JSON data block (<script type="application/json">, allauth's and ninja's settings) is data the
browser never runs, and is allowed.

The walk checks itself against the URL patterns: a new page that no test visits fails here
until it is added to the walk (or to NOT_PAGES, with the reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib import admin
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, resolve
from django.utils import timezone
from django.utils.csp import CSP
from playwright.sync_api import Browser, expect

from tenantry import urls as portal_urls
from tenantry.accounts.models import ApiKey, User
from tenantry.billing.models import Project
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Database, Invitation, Membership
from tenantry.domains.models import Domain
from tenantry.operations.tasks import run_operation
from tenantry.releases.models import Upgrade, publish
from tenantry.support import verbs as support
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tests.browser import Console, new_page
from tests.conftest import (
    client_for,
    database_records,
    make_account,
    reauthenticate,
    sign_in,
    totp_code,
)
from tests.helpers import (
    PORTAL_ORIGIN,
    add_security_key,
    connect_token,
    sign_in_db,
    signed_in,
    subscribed,
    visitor,
)

WORKSPACE_URLCONF = "tenantry.workspace.urls"

# What the walk does not open, by route, and why: none of them is a page.
NOT_PAGES = {
    # Files and data
    "databases/<str:name>/download/": "a ZIP file",
    "databases/<str:name>/backups/<int:backup_id>/download/": "a ZIP file",
    "support/<int:ticket_id>/files/<int:attachment_id>/": "an attachment",
    "desk/<int:ticket_id>/files/<int:attachment_id>/": "an attachment",
    "accounts/2fa/recovery-codes/download/": "a text file",
    "accounts/2fa/webauthn/login/": "JSON for a passkey sign-in",
    "attachments/<int:pk>/": "a workspace attachment",
    "internal/tls/ask": "Caddy's question: an empty answer",
    "admin/jsi18n/": "a script file",
    "admin/autocomplete/": "JSON",
    # POST only: the answer is a redirect, or a page visited elsewhere in the walk
    "account/security/logout-all/": "POST only",
    "account/security/developer-mode/": "POST only",
    "account/security/api-keys/<int:key_id>/revoke/": "POST only",
    "logout/": "POST only (the workspace's sign-out)",
    # Redirects to pages of the walk
    "admin/login/": "a redirect to the portal's sign-in",
    "admin/r/<path:content_type_id>/<path:object_id>/": "a redirect to the object's page",
    "admin/logout/": "POST only",
    "accounts/email/": "a redirect to the account's page",
    "accounts/password/set/": "a redirect: every account has a password",
    "accounts/login/code/confirm/": "a redirect: sign-in by code is off",
    "": "a redirect to the databases, or to the sign-in",
}
# The API answers JSON (its docs page excepted, which the walk opens).
NOT_PAGE_PREFIXES = ("api/v1/",)
# Patterns whose routes cannot be requested as such: catch-alls and the admin's shortcuts
# (`<object_id>/` redirects to `<object_id>/change/`).
CATCH_ALLS = ("admin/(?P<url>.*)$",)


# The policy


def directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        if words := part.split():
            found[words[0].lower()] = [w.lower() for w in words[1:]]
    return found


def policy_problems(response: HttpResponseBase) -> list[str]:
    policy = response.headers.get("Content-Security-Policy")
    if not policy:
        return ["no Content-Security-Policy header"]
    found = directives(policy)
    problems = []
    for kind in ("script-src", "style-src"):
        sources = found.get(kind, found.get("default-src"))
        if sources is None:
            problems.append(f"no {kind} (nor default-src)")
            continue
        for source in sources:
            if source in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*") or (
                source.startswith(("'nonce-", "'sha")) or source in ("data:", "http:", "https:")
            ):
                problems.append(f"{kind} allows {source}")
    if found.get("object-src", found.get("default-src")) != ["'self'"]:
        problems.append("object-src is not limited to 'self'")
    if found.get("base-uri") != ["'none'"]:
        problems.append("base-uri is not 'none'")
    if found.get("frame-ancestors") != ["'none'"]:
        problems.append("frame-ancestors is not 'none'")
    return problems


# The page


class InlineCode(HTMLParser):
    """What a strict policy blocks in a page: inline scripts, event handlers, javascript:
    URLs, inline styles."""

    DATA_TYPES = {"application/json", "application/ld+json"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check_attributes(tag, attrs)
        if tag == "script":
            self._script, self._text = dict(attrs), ""
        elif tag == "style":
            self.problems.append("a <style> element")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check_attributes(tag, attrs)

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            script, self._script = self._script, None
            kind = (script.get("type") or "").lower()
            if kind in self.DATA_TYPES:
                return  # data, never run
            if not script.get("src"):
                self.problems.append(f"an inline <script>: {self._text.strip()[:80]!r}")
            elif self._text.strip():
                self.problems.append("a <script src> with inline code as well")

    def _check_attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            elif name == "style":
                self.problems.append(f"<{tag} style={value!r}>")
            elif name == "hx-on" or name.startswith(("hx-on:", "hx-on-", "hx-vars")):
                self.problems.append(f"<{tag} {name}>: htmx evaluates it as code")
            elif (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")


def page_problems(response: HttpResponseBase) -> list[str]:
    problems = policy_problems(response)
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/html") and not response.streaming:
        assert isinstance(response, HttpResponse)
        parser = InlineCode()
        parser.feed(response.content.decode())
        parser.close()
        problems += parser.problems
    return problems


# The URL patterns the walk must cover


def _join(prefix: str, route: str) -> str:
    """As Django joins the routes of nested patterns (ResolverMatch.route)."""
    return prefix + route.removeprefix("^") if prefix else route


def routes(urlconf: str) -> set[str]:
    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = _join(prefix, str(pattern.pattern))
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            else:
                yield route

    return set(walk(get_resolver(urlconf).url_patterns, ""))


def uncovered(urlconf: str, visited: set[str]) -> list[str]:
    missing = []
    for route in sorted(routes(urlconf) - visited):
        if route in NOT_PAGES or route.startswith(NOT_PAGE_PREFIXES) or route in CATCH_ALLS:
            continue
        if route.startswith("admin/") and route.endswith("<path:object_id>/"):
            continue  # redirects to .../change/
        missing.append(route)
    return missing


# A server error, through every middleware as a real one would go


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug, for the test")


urlpatterns = [path("boom/", boom), *portal_urls.urlpatterns]


class Walk:
    """Requests pages, records each one's problems and which route answered it."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.visited: dict[str, set[str]] = {"tenantry.urls": set(), WORKSPACE_URLCONF: set()}

    def get(self, client: Client, url: str, *statuses: int, post: dict | None = None) -> None:
        host = client.defaults.get("HTTP_HOST", "testserver")
        if post is None:
            response = client.get(url)
        else:
            response = client.post(url, post, HTTP_ORIGIN=PORTAL_ORIGIN)
        where = f"{'POST' if post is not None else 'GET'} {host}{url}"
        expected = statuses or (200,)
        assert response.status_code in expected, f"{where}: {response.status_code}"
        self.problems += [f"{where}: {problem}" for problem in page_problems(response)]
        urlconf = "tenantry.urls" if host == "testserver" else WORKSPACE_URLCONF
        try:
            match = resolve(url.split("?")[0], urlconf)
        except Exception:  # a 404: no route
            return
        # A redirect shows no page; a 404 may be no route's.
        if not 300 <= response.status_code < 400 and response.status_code != 404:
            self.visited[urlconf].add(match.route)


@pytest.fixture
def walk() -> Walk:
    return Walk()


def test_the_policy_allows_no_inline_script_nor_style(db: None) -> None:
    response = Client().get("/accounts/login/")
    assert policy_problems(response) == []
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]


def test_the_page_check_finds_what_the_policy_blocks() -> None:
    # The check of the walk below, against pages that break the policy.
    for html in [
        "<script>alert(1)</script>",
        "<script type='module'>import('/x.js')</script>",
        "<button onclick='go()'>Go</button>",
        "<body onload=go()>",
        "<a href='javascript:go()'>Go</a>",
        "<p style='color: red'>Red</p>",
        "<style>p { color: red }</style>",
        "<div hx-on:click='go()'></div>",
    ]:
        parser = InlineCode()
        parser.feed(html)
        parser.close()
        assert parser.problems, html
    for html in [
        "<script src='/static/x.js' defer></script>",
        '<script type="application/json" id="data">{"a": 1}</script>',
        "<p>onclick and style= in words</p>",
    ]:
        parser = InlineCode()
        parser.feed(html)
        parser.close()
        assert parser.problems == [], html


@pytest.mark.urls(__name__)
def test_every_page_has_the_strict_policy_and_no_inline_code(
    walk: Walk, owner: User, member: User
) -> None:
    # The people: the owner (a partner, developer, administrator of "acme"), a member with
    # TOTP, recovery codes and a security key, a staff account, and visitors.
    owner.developer_mode = True
    owner.partner_code = "PARTNER1"
    owner.save()
    staff = make_account("staff@example.com")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    secret = generate_totp_secret()
    TOTP.activate(member, secret)
    RecoveryCodes.activate(member)
    add_security_key(member)

    # The things they see: a database with a contact, a copy (an operation), a subscription,
    # a project, an upgrade report, an invitation, a request to support, an API key, a custom
    # domain waiting for its DNS, an expired database and one whose storage is gone.
    publish(releases.LATEST)  # a release with every page (companies since 2.0)
    acme = lifecycle.create("acme", by=owner)
    Membership.objects.create(database=acme, user=member, role=Membership.Role.USER)
    with tenant.using(acme) as db:
        ws.User.objects.using(db).create(login=member.email, account_id=member.pk)
        Contact = releases.model(acme.release, "Contact")
        contact = Contact.objects.using(db).create(name="Ann")  # type: ignore[attr-defined]
    copy = lifecycle.start_duplicate(acme, "acme-copy", for_testing=True, by=owner)
    run_operation.call(copy.pk)
    subscription = subscribed(acme, owner)
    project = Project.objects.create(partner=owner, production=acme)
    report = Upgrade.objects.create(
        database=acme, database_name="acme", automatic=True, from_release="1.1",
        to_release="2.0", state=Upgrade.State.FAILED, error="It broke.",
        finished_at=timezone.now(),
    )  # fmt: skip
    invitation = Invitation(database=acme, email="carol@example.com", role="user", invited_by=owner)
    token = invitation.new_token()
    invitation.save()
    ticket = support.open_request(
        owner, subject="Help", body="Please help.", category="technical", database=acme
    )
    ApiKey.objects.issue(owner, "deploy")
    members.send_invitations.enqueue([invitation.pk])  # a task for the admin's list
    Group.objects.create(name="Operators")
    Domain.objects.create(database=acme, name="shop.example.test")
    database_records(owner, 2, "gone")  # records without storage
    Database.objects.filter(name="gone-1").update(expires_at=timezone.now() - timedelta(days=1))

    anonymous = Client()
    mine = client_for(owner)
    theirs = client_for(member)
    staff_client = client_for(staff)
    pending = Client()
    sign_in(pending, member.email)  # at the second-factor prompt
    get = walk.get

    # Signed out
    for url in [
        "/accounts/login/", "/accounts/signup/", "/accounts/confirm-email/",
        "/accounts/password/reset/", "/accounts/password/reset/done/",
        "/accounts/password/reset/key/done/", "/api/v1/docs",
    ]:  # fmt: skip
        get(anonymous, url)
    get(anonymous, "/", 302)
    get(anonymous, "/accounts/inactive/")
    get(anonymous, "/accounts/confirm-email/no-such-key/", 200, 404)
    get(anonymous, "/accounts/password/reset/key/1-no-such-key/", 200, 400)
    get(anonymous, "/accounts/login/", 200, post={"login": owner.email, "password": "wrong"})
    get(pending, "/accounts/2fa/authenticate/")

    # The portal, signed in
    for url in [
        "/databases/", "/databases/restore/", "/databases/deleted/",
        "/databases/acme/duplicate/", "/databases/acme/backups/", "/databases/acme/upgrade/",
        "/databases/acme/rename/", "/databases/acme/users/", "/databases/acme/activity/",
        "/databases/acme/domains/", f"/invitations/{token}/", f"/operations/{copy.pk}/",
        f"/upgrades/{report.pk}/", "/subscriptions/", "/subscriptions/new/",
        f"/subscriptions/{subscription.code}/", f"/subscriptions/{subscription.code}/cancel/",
        f"/projects/{project.pk}/", "/support/", "/support/new/", f"/support/{ticket.pk}/",
        "/account/", "/account/security/",
        "/accounts/reauthenticate/", "/accounts/logout/", "/accounts/password/change/",
        "/accounts/2fa/", "/accounts/2fa/webauthn/", "/accounts/sessions/",
    ]:  # fmt: skip
        get(mine, url)
    get(mine, "/", 302)
    get(mine, "/databases/acme/connect/", post={})  # the page that posts the token on
    reauthenticate(mine)
    for url in [
        "/databases/acme/delete/", "/databases/acme/restore/", "/account/delete/",
        "/account/security/api-keys/new/", "/accounts/2fa/totp/activate/",
        "/accounts/2fa/webauthn/add/",
    ]:  # fmt: skip
        get(mine, url)
    get(mine, "/account/security/api-keys/new/", post={"name": "ci", "expires": ""})
    get(mine, "/account/email/", 302, post={"email": "owner2@example.com"})
    get(mine, "/account/email/", 400, post={"email": "not an address"})
    get(mine, "/account/email/confirm/")

    # The member: 2FA's pages, and a database they do not administer (403)
    get(theirs, "/accounts/2fa/reauthenticate/")
    get(theirs, "/accounts/2fa/webauthn/reauthenticate/")
    reauthenticate(theirs)
    key = member.authenticator_set.get(type="webauthn")  # type: ignore[attr-defined]
    for url in [
        "/accounts/2fa/recovery-codes/", "/accounts/2fa/recovery-codes/generate/",
        "/accounts/2fa/totp/deactivate/", f"/accounts/2fa/webauthn/keys/{key.pk}/remove/",
        f"/accounts/2fa/webauthn/keys/{key.pk}/edit/",
    ]:  # fmt: skip
        get(theirs, url)
    get(theirs, "/databases/acme/users/", 403)

    # Staff: the support desk and the admin
    reauthenticate(staff_client)
    get(staff_client, "/desk/")
    get(staff_client, f"/desk/{ticket.pk}/")
    for url in ["/admin/", "/admin/password_change/", "/admin/password_change/done/"]:
        get(staff_client, url)
    for model in admin.site._registry:
        meta = model._meta
        get(staff_client, f"/admin/{meta.app_label}/")
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        get(staff_client, base)
        get(staff_client, f"{base}add/", 200, 403)  # 403: records made by the product only
        if (obj := model._default_manager.first()) is not None:
            for action in ("change", "history", "delete"):
                get(staff_client, f"{base}{obj.pk}/{action}/", 200, 403)

    # Error pages
    get(anonymous, "/no/such/page/", 404)
    get(mine, "/databases/nosuchdb/users/", 404)
    get(Client(enforce_csrf_checks=True), "/accounts/login/", 403, post={"login": "a@b.c"})
    get(Client(raise_request_exception=False), "/boom/", 500)

    # A database's own pages (the workspace)
    ws_anonymous, ws_owner, ws_member = visitor("acme"), signed_in(acme, owner), visitor("acme")
    get(ws_anonymous, "/login/")
    get(ws_anonymous, "/login/", 200, post={"login": owner.email, "password": "wrong"})
    get(ws_anonymous, "/connect/", 400, 403, post={"token": "forged"})
    assert sign_in_db(ws_member, member.email, "correct horse battery staple").startswith(
        "/login/code/"
    )
    get(ws_member, "/login/code/")
    get(ws_member, "/login/code/", post={"code": totp_code(secret)[::-1]})
    token = connect_token(mine, "acme")
    get(visitor("acme"), "/connect/", 302, post={"token": token})
    for url in [
        "/", "/contacts/", f"/contacts/{contact.pk}/", "/attachments/", "/preferences/",
        "/users/", "/mail/",
    ]:  # fmt: skip
        get(ws_owner, url)
    get(ws_owner, "/companies/")
    get(ws_owner, "/no/such/page/", 404)
    ws_member.post("/login/code/", {"code": totp_code(secret)})
    get(ws_member, "/users/", 403)

    # The gateway's own pages
    get(visitor("no-such-db"), "/", 404)
    get(Client(HTTP_HOST="not_a_label.localhost"), "/", 404)
    get(Client(HTTP_HOST="shop.example.test"), "/", 404)  # a domain waiting for its DNS
    get(visitor("gone-1"), "/", 403)  # expired
    get(visitor("gone-0"), "/login/", 503, post={"login": "a@b.c", "password": "x"})  # no storage

    missing = uncovered("tenantry.urls", walk.visited["tenantry.urls"])
    missing += uncovered(WORKSPACE_URLCONF, walk.visited[WORKSPACE_URLCONF])
    assert missing == [], f"pages the walk does not open (add them, or to NOT_PAGES): {missing}"
    assert walk.problems == []

    for database in Database.objects.all():
        lifecycle.drop_storage(database)


# In a browser: the pages whose scripts or styles come from elsewhere than our templates


@pytest.mark.slow
def test_the_api_docs_and_the_gateways_pages_work_under_the_policy(
    portal: str, browser: Browser, settings: Any
) -> None:
    # The stylesheet of the gateway's pages comes from the portal's address, which the policy
    # takes from TENANTRY_PORTAL_URL when the settings load: here, the live server's.
    settings.SECURE_CSP = {**settings.SECURE_CSP, "style-src": [CSP.SELF, portal]}
    console = Console()
    page = new_page(browser, console)
    # ninja's Swagger UI: its scripts and styles are static files, its settings a JSON block.
    page.goto(f"{portal}/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tenantry API")
    operation = page.locator(".opblock-summary").filter(has_text="/api/v1/me").first
    operation.click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible()
    # A host that is no database's: the gateway's page, in the portal's look.
    port = portal.rsplit(":", 1)[1]
    page.goto(f"http://no-such-db.localhost:{port}/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert page.locator(".topbar").evaluate("e => getComputedStyle(e).display") == "flex"
    assert console.csp_violations == [], "\n".join(console.csp_violations)
