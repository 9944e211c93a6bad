"""Subscriptions through the API: the account's own are listed, read, changed, renewed and
cancelled, and databases linked and unlinked, by the owner alone (another account's is a 404, a
database it may not administer a 403); every refusal answers its sentence and code and changes
nothing; the database's answer says its subscription, trial, expiry and storage."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.billing.models import Invoice, Plan, Subscription
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Membership
from tests.conftest import api
from tests.helpers import run_pending

sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
JSON = "application/json"


@pytest.fixture
def standard(db: None) -> Plan:
    return Plan.objects.create(
        name="Standard", price_month=Decimal("12.50"), price_year=Decimal("120"),
        storage_bytes=10 * 1024**3, max_databases=2,
    )  # fmt: skip


@pytest.fixture
def premium(db: None) -> Plan:
    return Plan.objects.create(
        name="Premium", price_month=Decimal("20"), price_year=Decimal("200"),
        storage_bytes=100 * 1024**3, max_databases=10, grows=True,
    )  # fmt: skip


def shop(owner: User, member: User) -> Database:
    """A database the owner administers and the member uses."""
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


def paid(owner: User, plan: Plan, **options: Any) -> Subscription:
    """A subscription of `owner` whose first invoice is paid."""
    subscription = subscriptions.subscribe(owner, plan, by=owner, **options)
    subscriptions.pay(subscription.invoices.get())  # type: ignore[attr-defined]
    subscription.refresh_from_db()
    return subscription


def iso(moment: datetime) -> str:
    """A datetime as the API writes it (to the millisecond)."""
    return DjangoJSONEncoder().default(moment)  # type: ignore[no-any-return]


def as_it_is(subscription: Subscription) -> tuple[Any, ...]:
    """What a refusal must leave alone: the subscription, its invoices and its databases."""
    subscription.refresh_from_db()
    return (
        subscription.plan_id, subscription.users, subscription.state,  # type: ignore[attr-defined]
        subscription.renews_at, subscription.cancel_at_period_end,
        list(subscription.invoices.values_list("pk", "paid_at")),  # type: ignore[attr-defined]
        list(subscription.databases.values_list("name", flat=True)),  # type: ignore[attr-defined]
    )  # fmt: skip


def refused(response: Any, status: int, code: str, detail: str) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {"detail": detail, "code": code}


def test_the_api_s_subscription_enums_are_the_models_choices() -> None:
    from tenantry.api import schemas

    assert {m.value for m in schemas.SubscriptionState} == set(Subscription.State.values)
    assert {m.value for m in schemas.SubscriptionPeriod} == set(Subscription.Period.values)


# Reading


@sqlite
def test_the_owner_reads_their_subscription_and_its_invoices(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard, period="year", users=3)
    subscriptions.link(subscription, database, by=owner)
    subscriptions.renew(subscription, by=owner)  # a second invoice, unpaid
    subscription.refresh_from_db()
    second, first = subscription.invoices.all()  # type: ignore[attr-defined]
    key = api(owner)

    response = key.get(f"/api/v1/subscriptions/{subscription.code}")
    assert response.status_code == 200, response.content
    plan = {
        "name": "Standard", "price_month": "12.50", "price_year": "120.00",
        "storage_bytes": 10 * 1024**3, "max_databases": 2, "grows": False,
    }  # fmt: skip
    summary = {
        "code": subscription.code,
        "plan": plan,
        "period": "year",
        "users": 3,
        "state": "past_due",  # the renewal's invoice is unpaid
        "renews_at": iso(subscription.renews_at),
        "cancel_at_period_end": False,
        "created_at": iso(subscription.created_at),
        "databases": ["shop"],
    }
    assert response.json() == {
        **summary,
        "users_taken": 2,  # the owner and the member of "shop"
        "invoices": [
            {
                "number": invoice.number,
                "issued_at": iso(invoice.issued_at),
                "period_start": iso(invoice.period_start),
                "period_end": iso(invoice.period_end),
                "plan": "Standard",
                "users": 3,
                "amount": "360.00",
                "paid": invoice is first,
            }
            for invoice in (second, first)
        ],
    }
    assert second.number == f"INV-{second.pk:06d}"
    # A code is read aloud and typed: in small letters too.
    assert key.get(f"/api/v1/subscriptions/{subscription.code.lower()}").status_code == 200

    listed = key.get("/api/v1/subscriptions").json()
    assert listed == {"data": [summary], "has_more": False, "next_cursor": None}


@sqlite
def test_another_account_s_subscription_is_a_404_to_members_and_outsiders(
    engine_kind: str, owner: User, member: User, outsider: User, standard: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard)
    subscriptions.link(subscription, database, by=owner)
    before = as_it_is(subscription)
    code = subscription.code
    for person in (member, outsider):  # the member uses a database it pays for: no matter
        key = api(person)
        assert key.get("/api/v1/subscriptions").json()["data"] == []
        missing = f"No subscription “{code}”."
        refused(key.get(f"/api/v1/subscriptions/{code}"), 404, "not_found", missing)
        answers = [
            key.patch(f"/api/v1/subscriptions/{code}", {"users": 9}, content_type=JSON),
            key.post(f"/api/v1/subscriptions/{code}/cancel"),
            key.post(f"/api/v1/subscriptions/{code}/renew"),
            key.post(
                f"/api/v1/subscriptions/{code}/databases", {"name": "shop"}, content_type=JSON
            ),
            key.delete(f"/api/v1/subscriptions/{code}/databases/shop"),
        ]
        for response in answers:
            refused(response, 404, "not_found", missing)
    refused(
        api(owner).get("/api/v1/subscriptions/M0000-NONE"),
        404,
        "not_found",
        "No subscription “M0000-NONE”.",
    )
    assert as_it_is(subscription) == before


@sqlite
def test_the_account_s_subscriptions_come_in_pages_a_cursor_walks(
    engine_kind: str, owner: User, outsider: User, standard: Plan
) -> None:
    codes = sorted(paid(owner, standard).code for _ in range(5))
    paid(outsider, standard)  # not the owner's: never listed
    key = api(owner)
    seen, cursor = [], ""
    while True:
        answer = key.get(f"/api/v1/subscriptions?limit=2&cursor={cursor}").json()
        seen.append([s["code"] for s in answer["data"]])
        if not answer["has_more"]:
            assert answer["next_cursor"] is None
            break
        cursor = answer["next_cursor"]
    assert seen == [codes[:2], codes[2:4], codes[4:]]
    refused(
        key.get("/api/v1/subscriptions?cursor=not-ours"),
        400,
        "invalid",
        "This cursor is not one the API gave.",
    )
    assert key.get("/api/v1/subscriptions?limit=0").status_code == 422


@sqlite
def test_the_database_says_its_subscription_trial_expiry_and_storage(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    Database.objects.filter(pk=database.pk).update(size_bytes=2048)
    database.refresh_from_db()
    key = api(owner)
    trial = key.get("/api/v1/databases/shop").json()
    assert trial["expires_at"] is not None
    assert {k: trial[k] for k in SUBSCRIPTION_FIELDS} == {
        "subscription": None, "trial_ends_at": trial["expires_at"], "expired": False,
        "usage_bytes": 2048, "limit_bytes": None,
    }  # fmt: skip

    subscription = paid(owner, standard)
    subscriptions.link(subscription, database, by=owner)
    for answer in (
        key.get("/api/v1/databases/shop").json(),
        key.get("/api/v1/databases").json()["data"][0],
        api(member).get("/api/v1/databases/shop").json(),  # users see it too
    ):
        assert {k: answer[k] for k in SUBSCRIPTION_FIELDS} == {
            "subscription": subscription.code, "trial_ends_at": None, "expired": False,
            "usage_bytes": 2048, "limit_bytes": 10 * 1024**3,
        }  # fmt: skip

    # Its subscription expired (an invoice unpaid past the grace period): so has it.
    Subscription.objects.filter(pk=subscription.pk).update(state="expired")
    Database.objects.filter(pk=database.pk).update(expired=True)
    answer = key.get("/api/v1/databases/shop").json()
    assert (answer["status"], answer["expired"], answer["subscription"]) == (
        "expired", True, subscription.code
    )  # fmt: skip


SUBSCRIPTION_FIELDS = ("subscription", "trial_ends_at", "expired", "usage_bytes", "limit_bytes")


# Changing, renewing, cancelling


@sqlite
def test_the_owner_changes_the_users_and_the_plan_and_the_next_invoice_shows_them(
    engine_kind: str, owner: User, member: User, standard: Plan, premium: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard, users=2)
    subscriptions.link(subscription, database, by=owner)
    key = api(owner)
    url = f"/api/v1/subscriptions/{subscription.code}"

    response = key.patch(url, {"users": 8, "plan": "Premium"}, content_type=JSON)
    assert response.status_code == 200, response.content
    changed = response.json()
    assert (changed["users"], changed["plan"]["name"], changed["plan"]["grows"]) == (
        8, "Premium", True
    )  # fmt: skip
    assert [i["amount"] for i in changed["invoices"]] == ["25.00"]  # issued before: as it was
    entry = Activity.objects.get(database=database, kind="subscription", channel="api")
    assert entry.detail == f"{subscription.code}: users 2 → 8, plan Standard → Premium"
    assert (entry.actor, entry.result) == (owner.email, "done")
    # One field at a time; nothing sent changes nothing.
    assert key.patch(url, {"users": 5}, content_type=JSON).json()["users"] == 5
    assert key.patch(url, {}, content_type=JSON).json()["users"] == 5

    renewed = key.post(f"{url}/renew").json()
    latest = renewed["invoices"][0]
    assert (latest["plan"], latest["users"], latest["amount"], latest["paid"]) == (
        "Premium", 5, "100.00", False
    )  # fmt: skip


@sqlite
def test_a_change_refused_answers_its_sentence_and_code_and_changes_nothing(
    engine_kind: str, owner: User, standard: Plan, premium: Plan
) -> None:
    subscription = paid(owner, premium, users=2)
    for name in ("shop", "depot"):
        subscriptions.link(subscription, lifecycle.create(name, by=owner), by=owner)
    Plan.objects.create(
        name="Solo", price_month=5, price_year=50, storage_bytes=1024**3, max_databases=1
    )
    before = as_it_is(subscription)
    key = api(owner)
    url = f"/api/v1/subscriptions/{subscription.code}"

    refused(
        key.patch(url, {"users": 0}, content_type=JSON),
        400,
        "invalid",
        "A subscription has at least one user.",
    )
    refused(
        key.patch(url, {"users": 3, "plan": "Gold"}, content_type=JSON),
        400,
        "invalid",
        "There is no plan “Gold”. The plans are “Premium”, “Solo” and “Standard”.",
    )
    refused(
        key.patch(url, {"users": 3, "plan": "Solo"}, content_type=JSON),
        409,
        "limit",
        "The Solo plan takes 1 database, and 2 are linked: unlink some first.",
    )
    too_many = key.patch(url, {"users": 100_001}, content_type=JSON)
    assert too_many.status_code == 422 and too_many.json()["code"] == "invalid_request"
    assert too_many.json()["detail"].startswith("Invalid request: users: ")
    assert as_it_is(subscription) == before

    Subscription.objects.filter(pk=subscription.pk).update(state="expired")
    before = as_it_is(subscription)
    refused(
        key.patch(url, {"users": 3}, content_type=JSON),
        400,
        "invalid",
        f"The subscription {subscription.code} is expired: it cannot be changed.",
    )
    assert as_it_is(subscription) == before


@sqlite
def test_the_owner_cancels_and_renewing_takes_the_cancellation_back(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard, period="month")
    subscriptions.link(subscription, database, by=owner)
    key = api(owner)
    url = f"/api/v1/subscriptions/{subscription.code}"

    response = key.post(f"{url}/cancel")
    assert response.status_code == 200, response.content
    cancelled = response.json()
    assert (cancelled["state"], cancelled["cancel_at_period_end"]) == ("active", True)
    assert cancelled["renews_at"] == iso(subscription.renews_at)  # it ends then
    before = as_it_is(subscription)
    refused(
        key.post(f"{url}/cancel"),
        400,
        "invalid",
        f"The subscription {subscription.code} is already cancelled or over.",
    )
    assert as_it_is(subscription) == before

    response = key.post(f"{url}/renew")
    assert response.status_code == 200, response.content
    renewed = response.json()
    # Past due until its new invoice is paid.
    assert (renewed["state"], renewed["cancel_at_period_end"]) == ("past_due", False)
    assert len(renewed["invoices"]) == 2
    latest = renewed["invoices"][0]
    assert latest["period_start"] == iso(subscription.renews_at)
    assert renewed["renews_at"] == latest["period_end"]
    details = Activity.objects.filter(database=database, kind="subscription", channel="api")
    assert [e.detail.split(":")[0] for e in details.order_by("pk")] == [
        f"{subscription.code} cancelled",
        f"{subscription.code} renewed until {renewed['renews_at'][:10]}",
    ]

    Subscription.objects.filter(pk=subscription.pk).update(state="expired")
    before = as_it_is(subscription)
    refused(
        key.post(f"{url}/renew"),
        400,
        "invalid",
        f"The subscription {subscription.code} has expired: pay its invoices to bring it back.",
    )
    refused(
        key.post(f"{url}/cancel"),
        400,
        "invalid",
        f"The subscription {subscription.code} is already cancelled or over.",
    )
    assert as_it_is(subscription) == before


@sqlite
def test_a_renewal_retried_with_its_idempotency_key_invoices_once(
    engine_kind: str, owner: User, standard: Plan
) -> None:
    subscription = paid(owner, standard)
    key = api(owner)
    url = f"/api/v1/subscriptions/{subscription.code}/renew"
    first = key.post(url, headers={"Idempotency-Key": "renew-1"})
    again = key.post(url, headers={"Idempotency-Key": "renew-1"})
    assert (first.status_code, again.status_code) == (200, 200), again.content
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert Invoice.objects.filter(subscription=subscription).count() == 2
    # The same key on another subscription's path is another request: refused, not run.
    other = paid(owner, standard)
    mismatch = key.post(
        f"/api/v1/subscriptions/{other.code}/renew", headers={"Idempotency-Key": "renew-1"}
    )
    assert mismatch.status_code == 422 and mismatch.json()["code"] == "idempotency_mismatch"
    assert Invoice.objects.filter(subscription=other).count() == 1
    # Without a key, a retry is another renewal.
    assert key.post(url).status_code == 200
    assert Invoice.objects.filter(subscription=subscription).count() == 3


# Linking and unlinking


@sqlite
def test_the_owner_links_a_database_and_an_expired_one_is_live_again(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    Database.objects.filter(pk=database.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1), expired=True
    )  # its trial is over
    subscription = paid(owner, standard)
    key = api(owner)
    assert key.get("/api/v1/databases/shop").json()["status"] == "expired"

    response = key.post(
        f"/api/v1/subscriptions/{subscription.code}/databases",
        {"name": " Shop "},  # names are taken as everywhere: trimmed, in small letters
        headers={"Idempotency-Key": "link-shop"},
        content_type=JSON,
    )
    assert response.status_code == 201, response.content
    linked = response.json()
    assert (linked["name"], linked["role"], linked["subscription"]) == (
        "shop", "admin", subscription.code
    )  # fmt: skip
    assert (linked["status"], linked["expired"], linked["trial_ends_at"]) == (
        "active", False, None
    )  # fmt: skip
    assert linked["limit_bytes"] == 10 * 1024**3
    assert linked == key.get("/api/v1/databases/shop").json()
    entry = Activity.objects.get(database=database, kind="subscription")
    assert (entry.detail, entry.channel, entry.result) == (
        f"linked to {subscription.code}", "api", "done"
    )  # fmt: skip
    shown = key.get(f"/api/v1/subscriptions/{subscription.code}").json()
    assert shown["databases"] == ["shop"]
    # A retry with the key answers the same, and links nothing twice.
    again = key.post(
        f"/api/v1/subscriptions/{subscription.code}/databases",
        {"name": " Shop "},
        headers={"Idempotency-Key": "link-shop"},
        content_type=JSON,
    )
    assert (again.status_code, again.content) == (201, response.content)
    assert Activity.objects.filter(database=database, kind="subscription").count() == 1


@sqlite
def test_a_link_refused_answers_its_sentence_and_code_and_changes_nothing(
    engine_kind: str, owner: User, member: User, outsider: User, standard: Plan
) -> None:
    database = shop(owner, member)
    lifecycle.create("depot", by=owner)
    mine = paid(owner, standard)
    theirs = paid(outsider, standard)
    of_member = paid(member, standard)
    key = api(owner)

    def link(client: Client, subscription: Subscription, name: str) -> Any:
        return client.post(
            f"/api/v1/subscriptions/{subscription.code}/databases",
            {"name": name},
            content_type=JSON,
        )

    # The member uses "shop" and does not administer it; the outsider does not see it.
    refused(
        link(api(member), of_member, "shop"),
        403,
        "forbidden",
        "Only administrators of “shop” link it to a subscription.",
    )
    refused(link(api(outsider), theirs, "shop"), 404, "not_found", "No database “shop”.")
    refused(link(key, mine, "nowhere"), 404, "not_found", "No database “nowhere”.")
    assert Database.objects.get(pk=database.pk).subscription is None

    subscriptions.link(theirs, database, by=None)  # the operator's doing
    both = [as_it_is(s) for s in (mine, theirs)]
    refused(
        link(key, mine, "shop"),
        409,
        "linked",
        f"“shop” is linked to the subscription {theirs.code}: unlink it there first.",
    )
    # Its subscription's owner pays for it, and still does not see it.
    refused(link(api(outsider), theirs, "shop"), 404, "not_found", "No database “shop”.")
    assert [as_it_is(s) for s in (mine, theirs)] == both
    subscriptions.unlink(theirs, database, by=None)
    subscriptions.link(mine, database, by=owner)
    refused(
        link(key, mine, "shop"),
        400,
        "invalid",
        f"“shop” is already linked to {mine.code}.",
    )
    subscriptions.link(mine, Database.objects.get(name="depot"), by=owner)  # 2 of 2
    lifecycle.create("third", by=owner)
    before = as_it_is(mine)
    refused(
        link(key, mine, "third"),
        409,
        "limit",
        f"The subscription {mine.code} has its 2 databases (the Standard plan's limit): unlink "
        "one or change the plan first.",
    )
    assert as_it_is(mine) == before

    lifecycle.start_duplicate(database, "shop-copy", by=owner)
    run_pending()
    other = paid(owner, standard)
    refused(
        link(key, other, "shop-copy"),
        400,
        "invalid",
        "“shop-copy” is a copy, which lasts 15 days: link the database it copies.",
    )
    Subscription.objects.filter(pk=other.pk).update(state="cancelled")
    refused(
        link(key, other, "third"),
        400,
        "invalid",
        f"The subscription {other.code} is cancelled: it cannot take a database.",
    )
    assert not Database.objects.filter(subscription=other).exists()
    assert Database.objects.get(name="third").subscription is None
    refusals = Activity.objects.filter(kind="subscription", result="refused", channel="api")
    assert refusals.count() == 6  # each with its sentence
    assert refusals.filter(reason__contains="link the database it copies").exists()


@sqlite
def test_a_linked_database_cannot_be_deleted_a_409_that_says_how(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard)
    subscriptions.link(subscription, database, by=owner)
    refused(
        api(owner).delete("/api/v1/databases/shop"),
        409,
        "linked",
        f"“shop” is linked to the subscription {subscription.code}, which pays for it: a "
        "database a subscription pays for cannot be deleted. Unlink it first (My subscriptions).",
    )
    assert Database.objects.get(pk=database.pk).status == "active"


@sqlite
def test_the_owner_unlinks_a_database_and_its_trial_goes_on_or_it_expires(
    engine_kind: str, owner: User, member: User, standard: Plan
) -> None:
    database = shop(owner, member)
    subscription = paid(owner, standard)
    subscriptions.link(subscription, database, by=owner)
    key = api(owner)
    url = f"/api/v1/subscriptions/{subscription.code}/databases"

    response = key.delete(f"{url}/shop")
    assert response.status_code == 204, response.content
    shown = key.get("/api/v1/databases/shop").json()
    assert (shown["subscription"], shown["expired"], shown["limit_bytes"]) == (None, False, None)
    assert shown["trial_ends_at"] is not None  # made today: its 15 days go on
    assert key.get(f"/api/v1/subscriptions/{subscription.code}").json()["databases"] == []
    entry = Activity.objects.get(database=database, kind="subscription", channel="api")
    assert (entry.detail, entry.result) == (f"unlinked from {subscription.code}", "done")

    # A database whose trial is over expires at once.
    Database.objects.filter(pk=database.pk).update(created_at=timezone.now() - timedelta(days=30))
    database.refresh_from_db()
    subscriptions.link(subscription, database, by=owner)
    assert key.delete(f"{url}/shop").status_code == 204
    shown = key.get("/api/v1/databases/shop").json()
    assert (shown["status"], shown["expired"]) == ("expired", True)


@sqlite
def test_an_unlink_refused_answers_its_sentence_and_code_and_changes_nothing(
    engine_kind: str, owner: User, member: User, outsider: User, standard: Plan
) -> None:
    database = shop(owner, member)
    lifecycle.create("depot", by=owner)
    mine = paid(owner, standard)
    subscriptions.link(mine, database, by=owner)
    key = api(owner)
    url = f"/api/v1/subscriptions/{mine.code}/databases"
    before = as_it_is(mine)

    refused(key.delete(f"{url}/depot"), 400, "invalid", f"“depot” is not linked to {mine.code}.")
    refused(key.delete(f"{url}/nowhere"), 404, "not_found", "No database “nowhere”.")

    assert as_it_is(mine) == before
    # An administrator of "shop" who does not own the subscription: refused.
    Membership.objects.filter(database=database, user=member).update(role="admin")
    theirs = paid(outsider, standard)
    subscriptions.unlink(mine, database, by=owner)
    subscriptions.link(theirs, database, by=None)
    refused(
        api(member).delete(f"/api/v1/subscriptions/{theirs.code}/databases/shop"),
        404,
        "not_found",
        f"No subscription “{theirs.code}”.",
    )
    subscriptions.unlink(theirs, database, by=None)
    subscriptions.link(mine, database, by=owner)
    refused(
        api(outsider).delete(f"{url}/shop"), 404, "not_found", f"No subscription “{mine.code}”."
    )
    # The owner of a subscription who is not a user of a database it pays for may unlink it
    # all the same: it pays for it.
    Membership.objects.filter(database=database, user=owner).delete()
    assert key.delete(f"{url}/shop").status_code == 204
    assert Database.objects.get(pk=database.pk).subscription_id is None  # type: ignore[attr-defined]


# The document


def test_the_document_describes_the_subscriptions(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    operations = {
        op["operationId"]: (method, path, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    one = "/api/v1/subscriptions/{code}"
    expected = {
        "listSubscriptions": ("get", "/api/v1/subscriptions", {"200", "400", "422"}),
        "getSubscription": ("get", one, {"200", "404"}),
        "changeSubscription": ("patch", one, {"200", "400", "403", "404", "409", "413", "422"}),
        "cancelSubscription": ("post", f"{one}/cancel", {"200", "400", "404"}),
        "renewSubscription": ("post", f"{one}/renew", {"200", "400", "404"}),
        "linkDatabase": (
            "post", f"{one}/databases", {"201", "400", "403", "404", "409", "413", "422"}
        ),
        "unlinkDatabase": ("delete", f"{one}/databases/{{name}}", {"204", "400", "403", "404"}),
    }  # fmt: skip
    for operation_id, (method, path, statuses) in expected.items():
        found_method, found_path, operation = operations[operation_id]
        assert (found_method, found_path, operation["tags"]) == (method, path, ["Subscriptions"])
        assert set(operation["responses"]) == statuses | {"401", "429"}, operation_id
        idempotent = any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
        assert idempotent == (method == "post"), operation_id
    assert "Subscriptions" in [tag["name"] for tag in schema["tags"]]
    components = schema["components"]["schemas"]
    assert components["SubscriptionState"]["enum"] == [
        "trial", "active", "past_due", "cancelled", "expired"
    ]  # fmt: skip
    assert components["SubscriptionPeriod"]["enum"] == ["month", "year"]
    assert {"subscription", "trial_ends_at", "expired", "usage_bytes", "limit_bytes"} <= set(
        components["Database"]["required"]
    )
    for name in ("Plan", "Invoice", "Subscription", "SubscriptionDetails", "Database"):
        for field, spec in components[name]["properties"].items():
            assert spec.get("description") and spec.get("examples"), (name, field)
