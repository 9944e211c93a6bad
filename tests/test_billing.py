"""Subscriptions and trials with the clock moved by the sweep: a trial's reminders and end, an
invoice unpaid through its grace period, renewals, a cancellation; linking and its refusals;
the users a subscription pays for; the operator's commands."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.billing.models import Invoice, Plan, Subscription
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Activity, Database, Membership
from tenantry.operations.sweep import sweep
from tests.conftest import client_for, reauthenticate, run_tasks
from tests.helpers import host, run_pending, signed_in

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def plan(db: None) -> Plan:
    return Plan.objects.create(
        name="Standard", price_month=Decimal("12.50"), price_year=Decimal("120"),
        storage_bytes=10 * 1024**3, max_databases=2,
    )  # fmt: skip


def cli(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def served(database: Database) -> int:
    """The status the database's host answers its sign-in page with."""
    return Client().get("/login/", HTTP_HOST=host(database.name or "")).status_code


def test_a_trial_is_reminded_then_ends_and_a_subscription_brings_it_back(
    engine_kind: str, owner: User, plan: Plan, mailoutbox: list
) -> None:
    shop = lifecycle.create("shop", by=owner)
    assert shop.is_trial and shop.status_label == "Trial: 15 days left"
    assert shop.expires_at is not None
    ends = shop.expires_at
    sweep(ends - timedelta(days=8))
    assert mailoutbox == []
    sweep(ends - timedelta(days=6))
    assert [m.subject for m in mailoutbox] == ["[Tenantry] The trial of “shop” ends in 7 days"]
    sweep(ends - timedelta(days=5))
    sweep(ends - timedelta(hours=12))
    assert mailoutbox[-1].subject == "[Tenantry] The trial of “shop” ends in 1 day"
    assert len(mailoutbox) == 2
    assert served(shop) == 200

    sweep(ends + timedelta(minutes=1))  # the sweep's clock: the record says it, at once
    shop.refresh_from_db()
    assert shop.is_expired and shop.status_label == "Expired"
    assert served(shop) == 403
    trial_over = (
        "“shop” has expired: it can only be downloaded or backed up. Its trial has ended: link "
        "it to a subscription to bring it back."
    )
    with pytest.raises(ValidationError, match="Its trial has ended") as refused:
        lifecycle.start_delete(shop, by=owner)
    assert refused.value.messages == [trial_over]

    subscription = subscriptions.subscribe(owner, plan, users=3, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    shop.refresh_from_db()
    assert not shop.is_expired and shop.subscription_code == subscription.code
    assert served(shop) == 200
    entry = Activity.objects.filter(database=shop, kind="subscription").get()
    assert (entry.detail, entry.actor) == (f"linked to {subscription.code}", owner.email)


def test_an_unpaid_invoice_makes_it_past_due_then_expired_and_paying_brings_it_back(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, users=3, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    first = subscription.invoices.get()  # type: ignore[attr-defined]
    assert (first.amount, first.users, first.unit_price) == (Decimal("37.50"), 3, Decimal("12.50"))
    assert subscription.code[0] == "M" and len(subscription.code) == len("M2611-4F7Q")

    sweep(first.issued_at + timedelta(days=1))
    subscription.refresh_from_db()
    assert subscription.state == "past_due"
    assert served(shop) == 200  # within the grace period
    sweep(first.issued_at + timedelta(days=15))
    subscription.refresh_from_db()
    shop.refresh_from_db()
    assert subscription.state == "expired" and shop.is_expired
    assert served(shop) == 403
    assert "Pay its subscription's invoices" in (shop.expiry_refusal() or "")
    assert shop.subscription_code == subscription.code  # still linked: not deletable either

    assert "is paid. The subscription" in cli("invoices", "pay", first.number)
    subscription.refresh_from_db()
    shop.refresh_from_db()
    assert subscription.state == "active" and not shop.is_expired
    assert served(shop) == 200
    with pytest.raises(CommandError, match=f"{first.number} is already paid"):
        cli("invoices", "pay", str(first.pk))


def test_renewals_invoice_each_period_with_the_users_of_the_day_and_a_cancel_ends_it(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, users=2, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    subscriptions.pay(subscription.invoices.get())  # type: ignore[attr-defined]
    bigger = Plan.objects.create(
        name="Big", price_month=Decimal("20"), price_year=Decimal("200"),
        storage_bytes=100 * 1024**3, max_databases=10,
    )  # fmt: skip
    subscriptions.change(subscription, users=4, plan=bigger, by=owner)
    renewal = subscription.renews_at
    sweep(renewal + timedelta(minutes=1))
    subscription.refresh_from_db()
    latest = subscription.invoices.first()  # type: ignore[attr-defined]
    assert (latest.plan_name, latest.users, latest.amount) == ("Big", 4, Decimal("80.00"))
    assert latest.period_start == renewal and subscription.renews_at == latest.period_end
    assert subscription.state == "past_due"  # until that invoice is paid
    subscriptions.pay(latest)
    subscription.refresh_from_db()
    assert subscription.state == "active"

    subscriptions.renew(subscription, by=owner)  # now: the next period at once
    assert subscription.invoices.count() == 3  # type: ignore[attr-defined]
    subscriptions.pay(subscription.invoices.first())  # type: ignore[attr-defined]
    subscriptions.cancel(subscription, by=owner)
    with pytest.raises(ValidationError, match="already cancelled"):
        subscriptions.cancel(subscription, by=owner)
    ends = subscription.renews_at
    sweep(ends - timedelta(minutes=1))
    subscription.refresh_from_db()
    assert subscription.state == "active"
    sweep(ends + timedelta(minutes=1))
    subscription.refresh_from_db()
    shop.refresh_from_db()
    assert subscription.state == "cancelled" and shop.is_expired
    assert subscription.invoices.count() == 3  # type: ignore[attr-defined]
    details = list(
        Activity.objects.filter(database=shop, kind="subscription").values_list("detail", flat=True)
    )
    assert f"{subscription.code}: users 2 → 4, plan Standard → Big" in details
    assert f"{subscription.code} cancelled: its period ended" in details

    invoice = subscriptions.renew(subscription, by=owner)  # an ended one taken up again
    subscription.refresh_from_db()
    shop.refresh_from_db()
    assert subscription.state == "past_due" and not shop.is_expired  # until that is paid
    subscriptions.pay(invoice)
    subscription.refresh_from_db()
    assert subscription.state == "active"


@pytest.mark.django_db(transaction=True)
def test_two_renewals_at_once_invoice_one_period(engine_kind: str, owner: User, plan: Plan) -> None:
    """Two requests of one double click, each with the renewal date its page showed, and each
    with the subscription read before the other renews: one renews, the other is told."""
    subscription = subscriptions.subscribe(owner, plan, by=owner)
    seen = subscription.renews_at
    both = threading.Barrier(2)
    outcomes: list[str] = []

    def renew() -> None:
        read = Subscription.objects.get(pk=subscription.pk)
        both.wait()
        try:
            subscriptions.renew(read, by=owner, seen=seen)
            outcomes.append("renewed")
        except ValidationError as error:
            outcomes.append(str(error.code))
        finally:
            connection.close()

    threads = [threading.Thread(target=renew) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["renewed", "stale"]
    assert subscription.invoices.count() == 2  # type: ignore[attr-defined]


def test_linking_refuses_what_cannot_be_with_a_sentence(
    engine_kind: str, owner: User, member: User, outsider: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    mine = subscriptions.subscribe(owner, plan, by=owner)
    theirs = subscriptions.subscribe(outsider, plan, by=outsider)
    cannot = "cannot be linked to “shop”: check the code"
    with pytest.raises(ValidationError, match=cannot) as refused:
        subscriptions.link(theirs, shop, by=owner)
    assert refused.value.code == "forbidden"
    members.invite(shop, [member.email], "user", by=owner)
    lifecycle.create("other", by=member)
    other = Database.objects.get(name="other")
    member_sub = subscriptions.subscribe(member, plan, by=member)
    with pytest.raises(ValidationError, match="Only administrators of “shop”"):
        subscriptions.link(member_sub, shop, by=member)

    subscriptions.link(mine, shop, by=owner)
    with pytest.raises(ValidationError, match="already linked") as refused:
        subscriptions.link(mine, shop, by=owner)
    with pytest.raises(ValidationError, match=f"linked to the subscription {mine.code}") as refused:
        subscriptions.link(theirs, shop, by=None)
    assert refused.value.code == "linked"

    lifecycle.start_duplicate(shop, "shop-copy", by=owner)
    run_pending()
    with pytest.raises(ValidationError, match="is a copy, which lasts 15 days"):
        subscriptions.link(mine, Database.objects.get(name="shop-copy"), by=owner)
    lifecycle.create("third", by=owner)
    subscriptions.link(mine, Database.objects.get(name="third"), by=owner)  # 2 of 2
    with pytest.raises(ValidationError, match="has its 2 databases") as refused:
        subscriptions.link(mine, other, by=None)
    assert refused.value.code == "limit"
    with pytest.raises(ValidationError, match="takes 1 database, and 2 are linked"):
        small = Plan.objects.create(
            name="Small", price_month=1, price_year=10, storage_bytes=1, max_databases=1
        )
        subscriptions.change(mine, plan=small, by=owner)
    with pytest.raises(ValidationError, match="at least one user"):
        subscriptions.change(mine, users=0, by=owner)

    Subscription.objects.filter(pk=theirs.pk).update(state="expired")
    theirs.refresh_from_db()
    with pytest.raises(ValidationError, match="is expired: it cannot take a database"):
        subscriptions.link(theirs, other, by=None)
    refusals = Activity.objects.filter(kind="subscription", result="refused")
    assert refusals.count() >= 5


def test_the_users_of_its_databases_count_against_the_subscription(
    engine_kind: str, owner: User, member: User, plan: Plan, mailoutbox: list
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, users=2, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    members.invite(shop, ["ada@example.com"], "user", by=owner)  # 2 of 2: the owner and Ada
    with pytest.raises(ValidationError) as refused:
        members.invite(shop, ["bob@example.com", "cy@example.com"], "user", by=owner)
    assert refused.value.messages == [
        f"The subscription {subscription.code} pays for 2 users and 2 are taken: these "
        "invitations would make 4. Raise its number of users on My subscriptions first."
    ]
    assert refused.value.code == "limit"
    assert not shop.invitations.filter(email="bob@example.com").exists()  # type: ignore[attr-defined]

    Plan.objects.filter(pk=plan.pk).update(grows=True)
    shop.refresh_from_db()
    members.invite(shop, ["bob@example.com", "cy@example.com"], "user", by=owner)
    subscription.refresh_from_db()
    assert subscription.users == 4
    assert Activity.objects.filter(
        database=shop, kind="subscription", detail=f"{subscription.code}: users 2 → 4"
    ).exists()
    run_tasks()
    assert [m.to for m in mailoutbox] == [
        [e] for e in ("ada@example.com", "bob@example.com", "cy@example.com")
    ]  # the owner grew it: no mail to the owner

    # Another administrator grows it: the owner, who pays, is told.
    Membership.objects.create(database=shop, user=member, role=Membership.Role.ADMIN)
    members.invite(shop, ["dee@example.com"], "user", by=member)
    subscription.refresh_from_db()
    assert subscription.users == 6  # the member and Dee
    run_tasks()
    told = [m for m in mailoutbox if m.to == [owner.email]]
    assert [m.subject for m in told] == [
        f"[Tenantry] Your subscription {subscription.code} now pays for 6 users"
    ]
    assert (
        f"{member.email} invited users to “shop”, which your subscription {subscription.code} "
        "pays for. Its plan, Standard, grows with them: the subscription now pays for 6 users "
        "instead of 4, and its next invoice is 75.00 a month." in " ".join(told[0].body.split())
    )
    assert f"/subscriptions/{subscription.code}/" in told[0].body


def test_the_operator_s_commands(engine_kind: str, owner: User) -> None:
    assert cli("plans", "add", "Standard", "--month", "12.50", "--year", "120", "--storage",
               "10GB", "--databases", "3") == "Plan Standard added.\n"  # fmt: skip
    assert cli("plans", "list") == (
        "Standard\t12.50/user/month\t120.00/user/year\t10.0\xa0GB\t3 database(s)\n"
    )
    for bad, sentence in [
        (["--month", "12,5"], "'12,5' is not an amount"),
        (["--storage", "lots"], "'lots' is not a size"),
        (["--databases", "0"], "at least one database"),
    ]:
        args = {"--month": "1", "--year": "1", "--storage": "1GB", "--databases": "1"}
        args |= dict(zip(bad[::2], bad[1::2], strict=True))
        with pytest.raises(CommandError, match=sentence):
            cli("plans", "add", "Other", *[x for pair in args.items() for x in pair])
    with pytest.raises(CommandError, match="already a plan named Standard"):
        cli("plans", "add", "Standard", "--month", "1", "--year", "1", "--storage", "1GB",
            "--databases", "1")  # fmt: skip

    lifecycle.create("shop", by=owner)
    out = cli("subscriptions", "add", owner.email, "--plan", "Standard", "--users", "3")
    code = out.split()[1]
    assert out == f"Subscription {code} added; its first invoice is issued.\n"
    assert cli("subscriptions", "link", code, "shop") == f"shop is linked to {code}.\n"
    shown = cli("subscriptions", "show", code.lower())
    assert f"Subscription {code} of {owner.email}: Active" in shown
    assert "Databases: shop" in shown and "37.50\tunpaid" in shown
    assert code in cli("subscriptions", "list", "--account", owner.email)
    invoice = Invoice.objects.get()
    assert f"{invoice.number}\t{code}" in cli("invoices", "list", "--unpaid")
    assert cli("subscriptions", "unlink", code, "shop") == f"shop is unlinked from {code}.\n"
    for args, sentence in [
        (["subscriptions", "show", "NOPE"], "There is no subscription NOPE."),
        (["subscriptions", "link", code, "nowhere"], "There is no database named nowhere."),
        (["subscriptions", "add", "x@example.com", "--plan", "Standard"], "no account"),
        (["subscriptions", "add", owner.email, "--plan", "Gold"], "There is no plan Gold"),
        (["subscriptions", "unlink", code, "shop"], "is not linked to"),
        (["invoices", "pay", "INV-x"], "is not an invoice number"),
        (["invoices", "pay", "999"], "There is no invoice 999."),
        (["sweep", "--at", "someday"], "is not a date and time"),
    ]:
        with pytest.raises(CommandError, match=sentence):
            cli(*args)
    later = (timezone.now() + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M")
    assert cli("sweep", "--at", later) == f"Swept as of {later.replace('T', ' ')} UTC.\n"
    assert Subscription.objects.get().state == "expired"  # its invoice unpaid past the grace


def test_staff_manage_plans_and_mark_invoices_paid_in_the_admin_pages(
    engine_kind: str, owner: User, outsider: User, plan: Plan
) -> None:
    anonymous = Client()
    response = anonymous.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/login/?next=/admin/"
    assert client_for(outsider).get("/admin/", follow=True).status_code == 403
    assert client_for(outsider).get("/admin/billing/plan/").status_code == 302

    staff = User.objects.create_superuser("staff@example.com", password="x" * 12)  # type: ignore[attr-defined]
    client = client_for(staff)
    # A staff page: asked again for the password, as at the support desk.
    assert client.get("/admin/")["Location"].startswith("/accounts/reauthenticate/")
    reauthenticate(client, "x" * 12)
    created = client.post(
        "/admin/billing/plan/add/",
        {"name": "Big", "price_month": "20.00", "price_year": "200.00",
         "storage_bytes": str(100 * 1024**3), "max_databases": "10"},
    )  # fmt: skip
    assert created.status_code == 302
    assert Plan.objects.get(name="Big").max_databases == 10
    assert "Big" in client.get("/admin/billing/plan/").content.decode()

    subscription = subscriptions.subscribe(owner, plan, users=2, by=None)
    invoice = subscription.invoices.get()  # type: ignore[attr-defined]
    paid = client.post(
        "/admin/billing/invoice/",
        {"action": "pay", "_selected_action": [invoice.pk]},
        follow=True,
    )
    assert f"{invoice.number} is paid." in paid.content.decode()
    invoice.refresh_from_db()
    assert invoice.paid_at is not None
    assert client.get(f"/admin/billing/invoice/{invoice.pk}/change/").status_code == 200  # read
    assert client.get("/admin/billing/invoice/add/").status_code == 403


def test_the_manager_tells_administrators_when_more_users_than_paid_for(
    engine_kind: str, owner: User, member: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, users=2, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    members.invite(shop, [member.email], "user", by=owner)
    assert "of 2 users" not in client_for(owner).get("/databases/").content.decode()
    Subscription.objects.filter(pk=subscription.pk).update(users=1)  # lowered since
    page = client_for(owner).get("/databases/").content.decode()
    assert 'class="badge warn">2 of 1 users</a>' in page
    Membership.objects.create(database=shop, user=member, role="user")
    assert "of 1 users" not in client_for(member).get("/databases/").content.decode()


def test_the_workspace_shows_a_trial_banner_in_its_last_five_days(
    engine_kind: str, owner: User
) -> None:
    shop = lifecycle.create("shop", by=owner)
    client = signed_in(shop, owner)
    assert "Free trial" not in client.get("/").content.decode()
    ends = timezone.now() + timedelta(days=4, hours=12)
    Database.objects.filter(pk=shop.pk).update(expires_at=ends)
    page = client.get("/").content.decode()
    assert f"Free trial: it ends on {ends:%Y-%m-%d}." in page
    subscriptions.link(subscriptions.subscribe(owner, Plan.objects.create(
        name="P", price_month=1, price_year=10, storage_bytes=1024**3, max_databases=1,
    ), by=None), shop, by=owner)  # fmt: skip
    assert "Free trial" not in client.get("/").content.decode()


def test_an_account_paying_for_databases_cannot_be_deleted_until_unlinked(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    refusal = (
        f"Your subscription {subscription.code} pays for databases: unlink them or let it end "
        "first."
    )
    assert refusal in owner.deletion_refusals()
    subscriptions.unlink(subscription, shop, by=owner)
    assert refusal not in owner.deletion_refusals()


def test_paying_an_expired_subscription_starts_its_period_again_and_unpaid_ones_block_new(
    engine_kind: str, owner: User, plan: Plan
) -> None:
    shop = lifecycle.create("shop", by=owner)
    subscription = subscriptions.subscribe(owner, plan, users=1, by=owner)
    subscriptions.link(subscription, shop, by=owner)
    late = subscription.invoices.get().issued_at + timedelta(days=90)  # type: ignore[attr-defined]
    sweep(late)  # three renewals, all unpaid: expired
    subscription.refresh_from_db()
    assert subscription.state == "expired"
    with pytest.raises(ValidationError, match=f"{subscription.code} expired with invoices unpaid"):
        subscriptions.subscribe(owner, plan, by=owner)  # a fresh one, never to be paid either
    for invoice in subscription.invoices.filter(paid_at=None):  # type: ignore[attr-defined]
        subscriptions.pay(invoice, now=late)
    subscription.refresh_from_db()
    assert subscription.state == "active" and subscription.renews_at >= late
    count = subscription.invoices.count()  # type: ignore[attr-defined]
    sweep(late + timedelta(hours=1))
    subscription.refresh_from_db()
    shop.refresh_from_db()
    assert subscription.state == "active" and not shop.is_expired
    assert subscription.invoices.count() == count  # type: ignore[attr-defined]
