"""Subscriptions in the portal: My subscriptions, a subscription's page and its forms (users,
plan, renew, cancel, link, unlink), subscribing (for a trial database at once), each refusal as
a form error that changes nothing, CSRF; the manager's trial, code and expired display; the
expired workspace's reasons; the users page's line when a subscription is over its users."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.billing.models import Invoice, Plan, Subscription
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Activity, Database, Membership
from tenantry.operations.sweep import sweep
from tests.conftest import client_for, database_records, make_account
from tests.helpers import run_pending, visitor

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def plan(db: None) -> Plan:
    return Plan.objects.create(
        name="Standard", price_month=Decimal("12.50"), price_year=Decimal("120"),
        storage_bytes=10 * 1024**3, max_databases=2,
    )  # fmt: skip


@pytest.fixture
def small(db: None) -> Plan:
    return Plan.objects.create(
        name="Small", price_month=Decimal("5"), price_year=Decimal("50"),
        storage_bytes=1024**3, max_databases=1,
    )  # fmt: skip


@pytest.fixture
def acme(engine_kind: str, owner: User, member: User) -> Database:
    """On its trial: the owner administers it, the member uses it."""
    database = lifecycle.create("acme", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


@pytest.fixture
def paid(acme: Database, owner: User, plan: Plan) -> Subscription:
    """The owner's monthly subscription of 3 users, its first invoice paid, paying for acme."""
    subscription = subscriptions.subscribe(owner, plan, users=3, by=owner)
    subscriptions.pay(subscription.invoices.get())  # type: ignore[attr-defined]
    subscriptions.link(subscription, acme, by=owner)
    return subscription


def text(response: object) -> str:
    """The page as a person reads its words: entities decoded, spaces and line breaks as one."""
    return " ".join(html.unescape(response.content.decode()).split())  # type: ignore[attr-defined]


def errors(response: object) -> str:
    """The form errors of a page: where a refusal's sentence shows."""
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', text(response))
    return " ".join(re.sub(r"<[^>]+>", "", e).strip() for e in found)


def fresh(subscription: Subscription) -> Subscription:
    return Subscription.objects.get(pk=subscription.pk)


# Who sees what


def test_my_subscriptions_lists_the_accounts_own(
    paid: Subscription, owner: User, member: User, outsider: User
) -> None:
    page = text(client_for(owner).get("/subscriptions/"))
    row = page[page.index(f'id="subscription-{paid.code}"') :]
    row = row[: row.index("</tr>")]
    assert f'href="/subscriptions/{paid.code}/"' in row
    assert "Standard, monthly" in row and ">3<" in row and "Active" in row
    assert f"Renews on {paid.renews_at:%Y-%m-%d}" in row and "acme" in row
    for someone in (member, outsider):
        page = text(client_for(someone).get("/subscriptions/"))
        assert paid.code not in page and "No subscriptions" in page


def test_a_subscriptions_page_is_its_owners_only(
    paid: Subscription, owner: User, member: User, outsider: User
) -> None:
    pages = [f"/subscriptions/{paid.code}/", f"/subscriptions/{paid.code}/cancel/"]
    for path in pages:
        assert client_for(owner).get(path).status_code == 200
        for someone in (member, outsider):  # the member uses one of its databases: not enough
            assert client_for(someone).get(path).status_code == 404, path
    posts = [
        {"action": "users", "users": "9"},
        {"action": "renew"},
        {"action": "unlink", "database": "acme"},
    ]
    for someone in (member, outsider):
        for data in posts:
            assert client_for(someone).post(pages[0], data).status_code == 404
        assert client_for(someone).post(pages[1]).status_code == 404
    assert fresh(paid).users == 3 and not fresh(paid).cancel_at_period_end
    assert paid.invoices.count() == 1  # type: ignore[attr-defined]
    assert Database.objects.get(name="acme").subscription_id == paid.pk  # type: ignore[attr-defined]
    assert client_for(owner).get("/subscriptions/M0000-NONE/").status_code == 404


def test_the_pages_need_a_signed_in_account(paid: Subscription) -> None:
    paths = ["/subscriptions/", "/subscriptions/new/", f"/subscriptions/{paid.code}/"]
    for path in [*paths, f"/subscriptions/{paid.code}/cancel/"]:
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_page_shows_details_databases_and_invoices(
    paid: Subscription, owner: User, member: User
) -> None:
    invoice = paid.invoices.get()  # type: ignore[attr-defined]
    # A second, unpaid invoice.
    subscriptions.renew(paid, by=owner)
    page = text(client_for(owner).get(f"/subscriptions/{paid.code}/"))
    assert "Standard" in page and "12.50 a user a month" in page
    assert "2 databases, 10.0 GB" in page
    assert f"Renews on {fresh(paid).renews_at:%Y-%m-%d}" in page
    assert 'id="linked-acme"' in page and 'aria-label="Unlink acme"' in page
    row = page[page.index(f'id="invoice-{invoice.number}"') :]
    row = row[: row.index("</tr>")]
    assert f"{invoice.issued_at:%Y-%m-%d}" in row and "37.50" in row and "Paid on" in row
    assert f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}" in row
    newest = paid.invoices.first()  # type: ignore[attr-defined]
    row = page[page.index(f'id="invoice-{newest.number}"') :]
    assert "Unpaid" in row[: row.index("</tr>")]


def test_the_owner_unlinks_a_database_it_pays_for_even_when_no_longer_its_administrator(
    paid: Subscription, owner: User, member: User, acme: Database
) -> None:
    Membership.objects.filter(database=acme, user=owner).delete()  # removed by another admin
    Membership.objects.filter(database=acme, user=member).update(role=Membership.Role.ADMIN)
    page = text(client_for(owner).get(f"/subscriptions/{paid.code}/"))
    assert 'id="linked-acme"' in page and "Unlink acme" in page
    response = client_for(owner).post(
        f"/subscriptions/{paid.code}/", {"action": "unlink", "database": "acme"}
    )
    assert response.status_code == 302
    assert Database.objects.get(pk=acme.pk).subscription_id is None  # type: ignore[attr-defined]


# Subscribing


def test_subscribing_starts_a_subscription_with_its_first_invoice(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    client = client_for(owner)
    page = text(client.get("/subscriptions/new/"))
    assert "Standard: 12.50 a user a month, or 120.00 a year; 2 databases, 10.0 GB" in page
    data = {"plan": plan.pk, "period": "year", "users": "4", "database": ""}
    response = client.post("/subscriptions/new/", data, follow=True)
    subscription = Subscription.objects.get(owner=owner)
    assert response.redirect_chain == [(f"/subscriptions/{subscription.code}/", 302)]
    assert (subscription.plan, subscription.period, subscription.users) == (plan, "year", 4)
    assert subscription.state == "active" and subscription.code.startswith("Y")
    invoice = subscription.invoices.get()  # type: ignore[attr-defined]
    assert invoice.amount == Decimal("480") and invoice.paid_at is None
    assert f"Your subscription {subscription.code} is active." in text(response)
    assert f"{invoice.number}, is to be paid within {settings.GRACE_DAYS} days" in text(response)


def test_subscribing_from_the_managers_trial_links_the_database_at_once(
    acme: Database, owner: User, plan: Plan
) -> None:
    client = client_for(owner)
    manager = text(client.get("/databases/"))
    assert 'href="/subscriptions/new/?database=acme">Subscribe</a>' in manager
    page = text(client.get("/subscriptions/new/?database=acme"))
    assert '<option value="acme" selected>acme</option>' in page
    data = {"plan": plan.pk, "period": "month", "users": "2", "database": "acme"}
    response = client.post("/subscriptions/new/", data, follow=True)
    subscription = Subscription.objects.get(owner=owner)
    assert "is active and pays for “acme”" in text(response)
    acme.refresh_from_db()
    assert acme.subscription == subscription and not acme.is_trial and acme.expires_at is None
    assert f">{subscription.code}</a>" in text(client.get("/databases/"))


def test_reached_for_a_database_subscribe_offers_the_accounts_live_subscriptions(
    paid: Subscription, owner: User
) -> None:
    lifecycle.create("shop", by=owner)
    page = text(client_for(owner).get("/subscriptions/new/?database=shop"))
    assert f'href="/subscriptions/{paid.code}/?database=shop#link"' in page
    page = text(client_for(owner).get(f"/subscriptions/{paid.code}/?database=shop"))
    assert '<option value="shop" selected>shop</option>' in page


def test_each_refusal_to_subscribe_is_a_form_error_and_changes_nothing(
    acme: Database, owner: User, member: User, plan: Plan
) -> None:
    duplicate = lifecycle.start_duplicate(acme, "acme-copy", for_testing=True, by=owner)
    run_pending()
    assert duplicate.pk and Database.objects.filter(name="acme-copy").exists()
    other = lifecycle.create("other", by=member)  # the owner has nothing to do with it
    assert other.pk
    base = {"plan": plan.pk, "period": "month", "users": "1", "database": ""}
    refusals = [
        (owner, {"users": "0"}, "A subscription has at least one user."),
        (owner, {"period": "week"}, "A subscription is paid monthly or yearly."),
        (owner, {"plan": "999"}, "Choose one of the plans."),
        (owner, {"users": "100001"}, "A subscription has at most 100000 users."),
        (
            owner,
            {"database": "acme-copy"},
            "“acme-copy” is a copy, which lasts 15 days: link the database it copies.",
        ),
        (owner, {"database": "other"}, "You have no database “other”."),
        (member, {"database": "acme"}, "Only administrators of “acme” link it to a subscription."),
    ]
    for who, change, sentence in refusals:
        response = client_for(who).post("/subscriptions/new/", base | change)
        assert response.status_code == 200
        assert sentence in errors(response), (change, errors(response))
    assert not Subscription.objects.exists() and not Invoice.objects.exists()
    assert Database.objects.get(pk=acme.pk).is_trial


def test_without_plans_subscribe_says_so(engine_kind: str, owner: User) -> None:
    page = text(client_for(owner).get("/subscriptions/new/"))
    assert "No plan is offered yet" in page and 'name="plan"' not in page


# Its forms: users, plan, renew, cancel


def test_the_owner_changes_the_users_and_the_plan(
    paid: Subscription, owner: User, small: Plan
) -> None:
    client = client_for(owner)
    path = f"/subscriptions/{paid.code}/"
    response = client.post(path, {"action": "users", "users": "7"}, follow=True)
    assert f"{paid.code} now has 7 users: the next invoice shows it." in text(response)
    assert fresh(paid).users == 7
    response = client.post(path, {"action": "plan", "plan": small.pk}, follow=True)
    assert f"{paid.code} is now on the Small plan" in text(response)
    assert fresh(paid).plan == small
    entries = Activity.objects.filter(kind="subscription", result="done").values_list(
        "detail", flat=True
    )
    assert f"{paid.code}: users 3 → 7" in entries


def test_each_refusal_to_change_is_a_form_error_and_changes_nothing(
    paid: Subscription, owner: User, small: Plan
) -> None:
    client = client_for(owner)
    path = f"/subscriptions/{paid.code}/"
    shop = lifecycle.create("shop", by=owner)
    subscriptions.link(paid, shop, by=owner)
    refusals = [
        ({"action": "users", "users": "0"}, "A subscription has at least one user."),
        ({"action": "users", "users": "many"}, "Enter a whole number."),
        (
            {"action": "plan", "plan": small.pk},
            "The Small plan takes 1 database, and 2 are linked: unlink some first.",
        ),
        ({"action": "plan", "plan": "999"}, "Choose one of the plans."),
    ]
    for data, sentence in refusals:
        response = client.post(path, data)
        assert response.status_code == 200
        assert sentence in errors(response), (data, errors(response))
    assert (fresh(paid).users, fresh(paid).plan.name) == (3, "Standard")
    assert client.post(path, {"action": "pay"}).status_code == 400
    # Over: a cancelled subscription takes no change.
    Subscription.objects.filter(pk=paid.pk).update(state=Subscription.State.CANCELLED)
    response = client.post(path, {"action": "users", "users": "5"})
    assert f"The subscription {paid.code} is cancelled: it cannot be changed." in errors(response)
    assert fresh(paid).users == 3


def renew_form(client: Client, subscription: Subscription) -> dict[str, str]:
    """The Renew form as the subscription's page shows it."""
    page = client.get(f"/subscriptions/{subscription.code}/").content.decode()
    shown = re.search(r'name="renews_at" value="([^"]+)"', page)
    assert shown is not None
    return {"action": "renew", "renews_at": html.unescape(shown[1])}


def test_renew_now_invoices_the_next_period(paid: Subscription, owner: User) -> None:
    ends = paid.renews_at
    client = client_for(owner)
    response = client.post(f"/subscriptions/{paid.code}/", renew_form(client, paid), follow=True)
    paid.refresh_from_db()
    assert paid.renews_at > ends and paid.invoices.count() == 2  # type: ignore[attr-defined]
    newest = paid.invoices.first()  # type: ignore[attr-defined]
    assert newest.period_start == ends
    assert f"renewed until {paid.renews_at:%Y-%m-%d}: {newest.number} is issued." in text(response)


def test_a_double_click_on_renew_invoices_once(paid: Subscription, owner: User) -> None:
    """Both posts carry the renewal date the page showed: the second finds it moved."""
    client = client_for(owner)
    form = renew_form(client, paid)
    assert client.post(f"/subscriptions/{paid.code}/", form).status_code == 302
    again = client.post(f"/subscriptions/{paid.code}/", form)
    paid.refresh_from_db()
    assert paid.invoices.count() == 2  # type: ignore[attr-defined]
    assert (
        f"The subscription {paid.code} was renewed meanwhile, until "
        f"{paid.renews_at:%Y-%m-%d}: nothing more was invoiced." in errors(again)
    )
    # The page it answers with shows the new date: renewing from it is one more period.
    assert client.post(f"/subscriptions/{paid.code}/", renew_form(client, paid)).status_code == 302
    assert paid.invoices.count() == 3  # type: ignore[attr-defined]


def test_renew_without_the_date_shown_is_refused(paid: Subscription, owner: User) -> None:
    client = client_for(owner)
    for posted in ({}, {"renews_at": "soon"}):
        response = client.post(f"/subscriptions/{paid.code}/", {"action": "renew", **posted})
        assert "The page did not say which period it showed: reload it and renew again." in errors(
            response
        )
    assert paid.invoices.count() == 1  # type: ignore[attr-defined]


def test_renew_is_refused_once_expired(paid: Subscription, owner: User) -> None:
    client = client_for(owner)
    form = renew_form(client, paid)
    Subscription.objects.filter(pk=paid.pk).update(state=Subscription.State.EXPIRED)
    response = client.post(f"/subscriptions/{paid.code}/", form)
    assert (
        f"The subscription {paid.code} has expired: pay its invoices to bring it back."
        in errors(response)
    )
    assert paid.invoices.count() == 1  # type: ignore[attr-defined]
    assert 'id="manage"' not in text(response)  # nothing to change on an expired one


def test_an_ended_subscription_can_be_renewed_from_its_page(
    paid: Subscription, owner: User
) -> None:
    subscriptions.cancel(paid, by=owner)
    sweep(paid.renews_at + timedelta(minutes=1))
    assert fresh(paid).state == "cancelled"
    client = client_for(owner)
    page = text(client.get(f"/subscriptions/{paid.code}/"))
    assert f"Ended on {paid.renews_at:%Y-%m-%d}" in page and "Renew now" in page
    assert 'value="users"' not in page and "/cancel/" not in page
    form = renew_form(client, paid)
    response = client.post(f"/subscriptions/{paid.code}/", form, follow=True)
    assert "renewed until" in text(response)
    assert fresh(paid).state == "past_due"  # until the renewal's invoice is paid


def test_cancel_asks_first_then_ends_with_the_period(paid: Subscription, owner: User) -> None:
    client = client_for(owner)
    page = text(client.get(f"/subscriptions/{paid.code}/"))
    assert f'href="/subscriptions/{paid.code}/cancel/"' in page
    page = text(client.get(f"/subscriptions/{paid.code}/cancel/"))
    assert f"<strong>{paid.renews_at:%Y-%m-%d}</strong>" in page and "“acme”" in page
    assert not fresh(paid).cancel_at_period_end  # a page to confirm: nothing yet
    response = client.post(f"/subscriptions/{paid.code}/cancel/", follow=True)
    assert f"{paid.code} is cancelled: it ends on {paid.renews_at:%Y-%m-%d}." in text(response)
    assert fresh(paid).cancel_at_period_end and fresh(paid).state == "active"
    assert f"Ends on {paid.renews_at:%Y-%m-%d}" in text(client.get("/subscriptions/"))
    # Again: refused with the verb's sentence.
    assert "already cancelled or over" in text(client.get(f"/subscriptions/{paid.code}/cancel/"))
    response = client.post(f"/subscriptions/{paid.code}/cancel/")
    assert f"The subscription {paid.code} is already cancelled or over." in errors(response)
    # Renewing takes the cancellation back.
    client.post(f"/subscriptions/{paid.code}/", renew_form(client, paid))
    assert not fresh(paid).cancel_at_period_end


# Linking and unlinking


def test_the_owner_links_and_unlinks_a_database(
    paid: Subscription, owner: User, acme: Database
) -> None:
    shop = lifecycle.create("shop", by=owner)
    client = client_for(owner)
    path = f"/subscriptions/{paid.code}/"
    page = text(client.get(path))
    link_form = page[page.index('id="link"') :]
    link_form = link_form[: link_form.index("</form>")]
    # Only what it can take: not acme (linked already).
    assert '<option value="shop">shop</option>' in link_form and "acme" not in link_form
    response = client.post(path, {"action": "link", "database": "shop"}, follow=True)
    assert f"“shop” is linked to {paid.code}." in text(response)
    assert Database.objects.get(pk=shop.pk).subscription_id == paid.pk  # type: ignore[attr-defined]
    response = client.post(path, {"action": "unlink", "database": "acme"}, follow=True)
    assert f"“acme” is unlinked from {paid.code}." in text(response)
    acme.refresh_from_db()
    assert acme.subscription is None and acme.is_trial and not acme.is_expired


def test_each_refusal_to_link_or_unlink_is_a_form_error_and_changes_nothing(
    paid: Subscription, owner: User, member: User, acme: Database, plan: Plan
) -> None:
    client = client_for(owner)
    path = f"/subscriptions/{paid.code}/"
    lifecycle.start_duplicate(acme, "acme-copy", for_testing=True, by=owner)
    run_pending()
    theirs = lifecycle.create("theirs", by=member)  # the owner only uses it
    Membership.objects.create(database=theirs, user=owner, role=Membership.Role.USER)
    elsewhere = lifecycle.create("elsewhere", by=owner)
    other = subscriptions.subscribe(owner, plan, by=owner)
    subscriptions.link(other, elsewhere, by=owner)
    refusals = [
        ({"database": "acme"}, f"“acme” is already linked to {paid.code}."),
        (
            {"database": "elsewhere"},
            f"“elsewhere” is linked to the subscription {other.code}: unlink it there first.",
        ),
        (
            {"database": "acme-copy"},
            "“acme-copy” is a copy, which lasts 15 days: link the database it copies.",
        ),
        ({"database": "theirs"}, "Only administrators of “theirs” link it to a subscription."),
        ({"database": "nowhere"}, "You have no database “nowhere”."),
    ]
    for data, sentence in refusals:
        response = client.post(path, {"action": "link"} | data)
        assert response.status_code == 200
        assert sentence in errors(response), (data, errors(response))
    # The plan's limit: 2 databases.
    shop = lifecycle.create("shop", by=owner)
    subscriptions.link(paid, shop, by=owner)
    third = lifecycle.create("third", by=owner)
    response = client.post(path, {"action": "link", "database": "third"})
    assert (
        f"The subscription {paid.code} has its 2 databases (the Standard plan's limit): unlink "
        "one or change the plan first." in errors(response)
    )
    response = client.post(path, {"action": "unlink", "database": "third"})
    assert f"“third” is not linked to {paid.code}." in errors(response)
    assert list(paid.databases.order_by("name").values_list("name", flat=True)) == ["acme", "shop"]  # type: ignore[attr-defined]
    assert Database.objects.get(pk=third.pk).is_trial
    refused = Activity.objects.filter(kind="subscription", result="refused")
    assert refused.filter(database_name="third").count() == 2  # recorded, as every refusal


def test_a_dead_subscription_takes_no_database(
    paid: Subscription, owner: User, acme: Database
) -> None:
    lifecycle.create("shop", by=owner)
    Subscription.objects.filter(pk=paid.pk).update(state=Subscription.State.CANCELLED)
    response = client_for(owner).post(
        f"/subscriptions/{paid.code}/", {"action": "link", "database": "shop"}
    )
    assert f"The subscription {paid.code} is cancelled: it cannot take a database." in errors(
        response
    )
    assert Database.objects.get(name="shop").subscription is None


# CSRF


def test_every_post_needs_the_csrf_token(paid: Subscription, owner: User, plan: Plan) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    path = f"/subscriptions/{paid.code}/"
    posts = [
        (path, {"action": "users", "users": "9"}),
        (path, {"action": "renew", "renews_at": paid.renews_at.isoformat()}),
        (path, {"action": "unlink", "database": "acme"}),
        (f"{path}cancel/", {}),
        ("/subscriptions/new/", {"plan": plan.pk, "period": "month", "users": "1"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert fresh(paid).users == 3 and not fresh(paid).cancel_at_period_end
    assert Subscription.objects.count() == 1 and Invoice.objects.count() == 1
    # The page's own forms carry it.
    page = text(client.get(path))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    data = {"csrfmiddlewaretoken": token.group(1), "action": "users", "users": "9"}
    assert client.post(path, data).status_code == 302
    assert fresh(paid).users == 9


# The manager


def test_the_manager_shows_the_trial_with_subscribe_to_administrators(
    acme: Database, owner: User, member: User
) -> None:
    days = settings.TRIAL_DAYS
    for who in (owner, member):
        row = _row(who, "acme")
        assert f'<span class="badge warn">Trial: {days} days left</span>' in row
    assert 'href="/subscriptions/new/?database=acme">Subscribe</a>' in _row(owner, "acme")
    assert "Subscribe" not in _row(member, "acme")


def test_the_manager_shows_the_subscription_code(
    paid: Subscription, owner: User, member: User
) -> None:
    assert f'<a href="/subscriptions/{paid.code}/" class="muted"' in _row(owner, "acme")
    row = _row(member, "acme")  # the code, without a link to a page it may not see
    assert paid.code in row and "/subscriptions/" not in row
    assert "Trial" not in row and "Active" in row


def test_the_manager_says_why_a_database_expired_and_what_to_do(
    acme: Database, owner: User, member: User
) -> None:
    Database.objects.filter(pk=acme.pk).update(expired=True, expires_at=timezone.now())
    row = _row(owner, "acme")
    assert '<span class="badge danger">Expired</span>' in row
    assert "Its trial has ended: link it to a subscription to bring it back." in row
    assert 'href="/subscriptions/new/?database=acme">Subscribe or link it</a>' in row
    assert "Connect" not in row
    row = _row(member, "acme")
    assert "Its trial has ended" in row and "Subscribe" not in row


def test_the_manager_sends_the_owner_of_an_expired_subscription_to_it(
    paid: Subscription, owner: User, member: User
) -> None:
    renewal = paid.renews_at
    sweep(renewal)  # its next invoice, left unpaid
    sweep(renewal + timedelta(days=settings.GRACE_DAYS + 1))
    assert fresh(paid).state == "expired"
    row = _row(owner, "acme")
    assert "Pay its subscription's invoices, or link it to a live subscription" in row
    assert f'href="/subscriptions/{paid.code}/"' in row and "Subscribe or link it" in row
    assert f'href="/subscriptions/{paid.code}/"' not in _row(member, "acme")


def test_the_manager_makes_the_same_queries_with_subscriptions(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    client = client_for(owner)
    client.get("/databases/")  # the first request records the session
    subscription = subscriptions.subscribe(owner, plan, by=owner)
    database_records(owner, 5, "few")
    Database.objects.filter(name__startswith="few-").update(subscription=subscription)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/databases/").status_code == 200
    database_records(owner, 40, "many")
    Database.objects.filter(name__startswith="many-").update(subscription=subscription)
    with CaptureQueriesContext(connection) as many:
        page = text(client.get("/databases/"))
    assert page.count(subscription.code) == 45 * 2  # each row: the link and its text
    assert len(many.captured_queries) == len(few.captured_queries)


def _row(user: User, name: str) -> str:
    page = text(client_for(user).get("/databases/"))
    row = page[page.index(f'<tr id="db-{name}">') :]
    return row[: row.index("</tr>")]


# The workspace of an expired database


def test_the_expired_workspace_says_a_trial_ended_and_how_to_subscribe(
    acme: Database,
) -> None:
    assert acme.expires_at is not None
    sweep(acme.expires_at + timedelta(minutes=1))
    response = visitor("acme").get("/")
    assert response.status_code == 403
    page = text(response)
    assert "This database has expired" in page
    assert f"expired on {acme.expires_at:%Y-%m-%d}: its free trial" in page
    assert f'href="{settings.PORTAL_URL}/subscriptions/new/?database=acme">subscribe</a>' in page
    assert "tenantry/portal.css" in page  # the portal's look


def test_the_expired_workspace_says_the_subscription_ended(
    paid: Subscription, acme: Database
) -> None:
    renewal = paid.renews_at
    sweep(renewal)  # its next invoice, left unpaid
    sweep(renewal + timedelta(days=settings.GRACE_DAYS + 1))
    page = text(visitor("acme").get("/login/"))
    assert "The subscription that paid for “acme” has ended" in page
    assert "paying the subscription's invoices, or by linking the database" in page
    assert "free trial" not in page


def test_the_expired_workspace_says_a_copy_lasts_15_days(acme: Database, owner: User) -> None:
    lifecycle.start_duplicate(acme, "acme-copy", for_testing=True, by=owner)
    run_pending()
    Database.objects.filter(name="acme-copy").update(expires_at=timezone.now() - timedelta(days=1))
    page = text(visitor("acme-copy").get("/"))
    assert "“acme-copy” is a copy, and copies last 15 days" in page
    assert "subscribe" not in page.lower()


# The users page


def test_the_users_page_says_when_the_subscription_is_over_its_users(
    paid: Subscription, owner: User, member: User, acme: Database
) -> None:
    client = client_for(owner)
    page = text(client.get("/databases/acme/users/"))
    assert 'id="over-quota"' not in page  # owner and member: 2 of 3
    # Across its databases: the owner again (one user), a third account, and an invitation;
    # made while it paid for more (inviting past its users may be refused).
    Subscription.objects.filter(pk=paid.pk).update(users=10)
    paid.refresh_from_db()
    shop = lifecycle.create("shop", by=owner)
    subscriptions.link(paid, shop, by=owner)
    Membership.objects.create(database=shop, user=make_account("third@example.com"))
    members.invite(shop, ["fourth@example.com"], "user", by=owner)
    Subscription.objects.filter(pk=paid.pk).update(users=3)
    page = text(client.get("/databases/acme/users/"))
    assert "4 of 3 users: over by 1." in page
    assert f"The subscription {paid.code} pays for 3" in page
    # The owner adds a user: no longer over.
    client.post(f"/subscriptions/{paid.code}/", {"action": "users", "users": "4"})
    assert 'id="over-quota"' not in text(client.get("/databases/acme/users/"))


def test_a_trial_database_has_no_users_line(acme: Database, owner: User) -> None:
    for i in range(3):
        members.invite(acme, [f"guest{i}@example.com"], "user", by=owner)
    assert 'id="over-quota"' not in text(client_for(owner).get("/databases/acme/users/"))
