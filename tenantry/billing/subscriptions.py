"""Every verb on a subscription: subscribe, link and unlink a database, change the users or the
plan, renew, cancel, pay an invoice; and what happens with time (the sweep): renewals,
invoices past due, expiry, trials' reminders and ends.

As databases' verbs (databases.lifecycle), each takes the acting account as `by=` (None: the
operator or the sweep), refuses with a ValidationError whose sentence a person reads, and
writes an activity entry on each database it concerns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.tasks import task
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.billing import quotas
from tenantry.billing.models import LIVE_STATES, Invoice, Plan, Subscription
from tenantry.databases import activity
from tenantry.databases.models import Database, Invitation, Membership

TRIAL_REMINDERS = (7, 1)  # days before a trial ends


def subscribe(
    owner: User, plan: Plan, *, period: str = Subscription.Period.MONTH, users: int = 1,
    by: User | None, now: datetime | None = None,
) -> Subscription:  # fmt: skip
    """A subscription of `owner`, active at once, with its first invoice (to be paid within
    TENANTRY_GRACE_DAYS)."""
    _check_users(users)
    unpaid = Subscription.objects.filter(
        owner=owner, state=Subscription.State.EXPIRED, invoices__paid_at=None
    ).first()
    if by is not None and unpaid is not None:  # else a new one each grace period, never paid
        raise ValidationError(
            f"The subscription {unpaid.code} expired with invoices unpaid: pay them first.",
            code="invalid",
        )
    if period not in Subscription.Period.values:
        raise ValidationError("A subscription is paid monthly or yearly.", code="invalid")
    now = now or timezone.now()
    for _ in range(10):  # a code already taken: draw another
        try:
            with transaction.atomic():
                subscription = Subscription.objects.create(
                    code=Subscription.new_code(period, now), owner=owner, plan=plan,
                    period=period, users=users, created_at=now, renews_at=now,
                )  # fmt: skip
                _invoice(subscription, now)
                return subscription
        except IntegrityError:
            continue
    raise ValidationError("No subscription code is free right now. Try again.")


# A guard for the database's integer (and an invoice's amount), not a rule of the product.
MAX_USERS = 100_000


def _check_users(users: int) -> None:
    if users < 1:
        raise ValidationError("A subscription has at least one user.", code="invalid")
    if users > MAX_USERS:
        raise ValidationError(f"A subscription has at most {MAX_USERS} users.", code="invalid")


def _invoice(
    subscription: Subscription, start: datetime, *, issued_at: datetime | None = None
) -> Invoice:
    """The invoice of the period from `start`, at today's plan and users, issued at
    `issued_at` (by default its start; its grace counts from then); the subscription now
    renews at the period's end."""
    end = subscription.next_renewal(start)
    price = subscription.plan.price(subscription.period)
    invoice = Invoice.objects.create(
        subscription=subscription, issued_at=issued_at or start,
        period_start=start, period_end=end,
        plan_name=subscription.plan.name, users=subscription.users, unit_price=price,
        amount=price * Decimal(subscription.users),
    )  # fmt: skip
    subscription.renews_at = end
    subscription.save(update_fields=["renews_at"])
    return invoice


def _lock(subscription: Subscription) -> None:
    """Read it again, its row locked until the transaction ends, so that two renewals (a
    double click, the sweep) never invoice one period twice. SQLite's transactions take the
    write lock when they begin (settings: IMMEDIATE)."""
    subscription.refresh_from_db(from_queryset=Subscription.objects.select_for_update())


def _record(subscription: Subscription, detail: str, *, by: User | None) -> None:
    for database in subscription.databases.exclude(name=None):  # type: ignore[attr-defined]
        activity.record(database, activity.Kind.SUBSCRIPTION, by=by, detail=detail)


def link(subscription: Subscription, database: Database, *, by: User | None) -> None:
    """The subscription pays for the database from now on: an expired one is live again."""
    detail = f"linked to {subscription.code}"
    refusals = activity.refusals(database, activity.Kind.SUBSCRIPTION, by=by, detail=detail)
    with refusals, transaction.atomic():
        # One link at a time per subscription: two at once could pass its databases' limit.
        list(Subscription.objects.select_for_update().filter(pk=subscription.pk).values("pk"))
        if by is not None and database.role_of(by) != Membership.Role.ADMIN:
            raise ValidationError(
                f"Only administrators of “{database.name}” link it to a subscription.",
                code="forbidden",
            )
        # Someone else's subscription (a partner linking the client's): its owner must
        # administer the database too.
        owner = subscription.owner
        if by is not None and owner != by and database.role_of(owner) != Membership.Role.ADMIN:
            raise ValidationError(cannot_link(subscription.code, database), code="forbidden")
        if not subscription.is_live:
            state = subscription.get_state_display().lower()
            raise ValidationError(
                f"The subscription {subscription.code} is {state}: it cannot take a database.",
                code="invalid",
            )
        if database.source_id is not None:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” is a copy, which lasts 15 days: link the database it copies.",
                code="invalid",
            )
        if database.subscription_id == subscription.pk:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” is already linked to {subscription.code}.", code="invalid"
            )
        current = database.subscription
        if current is not None and current.is_live:
            raise ValidationError(
                f"“{database.name}” is linked to the subscription {current.code}: unlink it "
                "there first.",
                code="linked",
            )
        limit = subscription.plan.max_databases
        if subscription.databases.exclude(name=None).count() >= limit:  # type: ignore[attr-defined]
            raise ValidationError(
                f"The subscription {subscription.code} has its {limit} database"
                f"{'' if limit == 1 else 's'} (the {subscription.plan.name} plan's limit): "
                "unlink one or change the plan first.",
                code="limit",
            )
        database.subscription = subscription
        database.expires_at, database.expired = None, False
        database.save(update_fields=["subscription", "expires_at", "expired"])
        activity.record(database, activity.Kind.SUBSCRIPTION, by=by, detail=detail)
        _revive(subscription)  # a trial project's staging databases with their production


def cannot_link(code: str, database: Database) -> str:
    """The refusal of a code that is unknown or another account's, alike: a page that tells
    them apart would let codes be guessed."""
    return (
        f"The subscription {code} cannot be linked to “{database.name}”: check the code, and "
        f"that its owner is an administrator of “{database.name}”."
    )


def unlink(subscription: Subscription, database: Database, *, by: User | None) -> None:
    """The subscription no longer pays for the database: what is left of its trial goes on,
    else it expires at once."""
    detail = f"unlinked from {subscription.code}"
    with activity.refusals(database, activity.Kind.SUBSCRIPTION, by=by, detail=detail):
        if database.subscription_id != subscription.pk:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” is not linked to {subscription.code}.", code="invalid"
            )
        # Its owner may always: it pays for it.
        if (
            by is not None
            and by != subscription.owner
            and database.role_of(by) != Membership.Role.ADMIN
        ):
            raise ValidationError(
                f"Only administrators of “{database.name}” unlink it from its subscription.",
                code="forbidden",
            )
        now = timezone.now()
        trial_end = database.created_at + timedelta(days=settings.TRIAL_DAYS)
        with transaction.atomic():
            database.subscription = None
            database.expires_at = max(trial_end, now)
            database.expired = trial_end <= now
            database.save(update_fields=["subscription", "expires_at", "expired"])
            activity.record(database, activity.Kind.SUBSCRIPTION, by=by, detail=detail)


def users_taken(subscription: Subscription) -> set[str]:
    """Who counts against its number of users: the accounts that use one of its databases,
    and the addresses invited to one (not yet accepted)."""
    return users_taken_by([subscription.pk]).get(subscription.pk, set())


def users_taken_by(subscription_ids: list[int]) -> dict[int, set[str]]:
    """users_taken of each of these subscriptions, in two queries (for a page of databases):
    of the databases each pays for, its trial projects' staging ones included."""
    paid = Q(database__name__isnull=False) & (
        Q(database__subscription__in=subscription_ids)
        | Q(database__project__production__subscription__in=subscription_ids)
    )
    key = Coalesce("database__project__production__subscription", "database__subscription")
    members = Membership.objects.filter(paid).annotate(key=key).values_list("key", "user__email")
    invited = (
        Invitation.objects.filter(paid, accepted_at=None)
        .annotate(key=key)
        .values_list("key", "email")
    )
    taken: dict[int, set[str]] = {}
    for subscription_id, email in [*members, *invited]:
        taken.setdefault(subscription_id, set()).add(email)
    return taken


def users_over(databases: list[Database]) -> dict[int, tuple[int, int]]:
    """The subscriptions of these databases that pay for fewer users than they have: for
    each, (users counted, users paid for)."""
    paid = {d.subscription.pk: d.subscription.users for d in databases if d.subscription}
    return {
        pk: (len(taken), paid[pk])
        for pk, taken in users_taken_by(list(paid)).items()
        if len(taken) > paid[pk]
    }


def paying(database: Database) -> Subscription | None:
    """The subscription that pays for the database: its own, or its trial project's
    production's."""
    project = database.project
    if project is not None and project.production is not None:
        return project.production.subscription or database.subscription
    return database.subscription


def lock(database: Database) -> None:
    """Inside a transaction: hold the row of the subscription that pays for the database, so
    that checks of its limits and the changes they allow happen one at a time."""
    subscription = paying(database)
    if subscription is not None:
        list(Subscription.objects.select_for_update().filter(pk=subscription.pk).values("pk"))


def users_needed(database: Database, emails: list[str]) -> int:
    """The users the database's subscription must pay for once `emails` are invited, when that
    is more than it has and its plan grows (the caller grows it); 0 when they fit. Past its
    users on a plan that does not grow: refused."""
    subscription = paying(database)
    if subscription is None:
        return 0
    taken = users_taken(subscription)
    needed = len(taken | set(emails))
    if needed <= subscription.users:
        return 0
    if subscription.plan.grows:
        return needed
    raise ValidationError(
        f"The subscription {subscription.code} pays for {subscription.users} user"
        f"{'' if subscription.users == 1 else 's'} and {len(taken)} are taken: these "
        f"invitations would make {needed}. Raise its number of users on My subscriptions first.",
        code="limit",
    )


def grow(subscription: Subscription, users: int, database: Database, *, by: User) -> None:
    """Inside the invitation's transaction, on a plan that grows: the subscription takes the
    users the invitations need, at once. Its owner is told when another administrator did it:
    the next invoice is theirs to pay."""
    before = subscription.users
    change(subscription, users=users, by=by)
    if by != subscription.owner:
        mail_grown.enqueue(subscription.pk, database.pk, by.pk, before)


@task
def mail_grown(subscription_id: int, database_id: int, by_id: int, before: int) -> None:
    subscription = Subscription.objects.select_related("owner", "plan").get(pk=subscription_id)
    context: dict[str, Any] = {
        "subscription": subscription,
        "database": Database.objects.get(pk=database_id),
        "by": User.objects.get(pk=by_id),
        "before": before,
        "amount": subscription.plan.price(subscription.period) * subscription.users,
        "period": "year" if subscription.period == Subscription.Period.YEAR else "month",
    }
    get_adapter().send_mail("billing/email/users_grown", subscription.owner.email, context)


def change(
    subscription: Subscription, *, users: int | None = None, plan: Plan | None = None,
    by: User | None,
) -> None:  # fmt: skip
    """At once; the next invoice shows it."""
    if not subscription.is_live:
        raise ValidationError(
            f"The subscription {subscription.code} is "
            f"{subscription.get_state_display().lower()}: it cannot be changed.",
            code="invalid",
        )
    changes = []
    if users is not None and users != subscription.users:
        _check_users(users)
        changes.append(f"users {subscription.users} → {users}")
        subscription.users = users
    if plan is not None and plan != subscription.plan:
        linked = subscription.databases.exclude(name=None).count()  # type: ignore[attr-defined]
        if linked > plan.max_databases:
            raise ValidationError(
                f"The {plan.name} plan takes {plan.max_databases} database"
                f"{'' if plan.max_databases == 1 else 's'}, and {linked} are linked: unlink "
                "some first.",
                code="limit",
            )
        changes.append(f"plan {subscription.plan.name} → {plan.name}")
        subscription.plan = plan
    if changes:
        with transaction.atomic():
            subscription.save(update_fields=["users", "plan"])
            _record(subscription, f"{subscription.code}: {', '.join(changes)}", by=by)


def renew(
    subscription: Subscription, *, by: User | None, now: datetime | None = None,
    seen: datetime | None = None,
) -> Invoice:  # fmt: skip
    """Now: the next period is invoiced at once and the subscription goes on past it. `seen`
    is the renewal date the person was shown: if it has moved since (a double click, another
    tab, the sweep), nothing is invoiced again."""
    with transaction.atomic():
        _lock(subscription)
        if seen is not None and subscription.renews_at != seen:
            raise ValidationError(
                f"The subscription {subscription.code} was renewed meanwhile, until "
                f"{subscription.renews_at:%Y-%m-%d}: nothing more was invoiced.",
                code="stale",
            )
        if subscription.state == Subscription.State.EXPIRED:
            raise ValidationError(
                f"The subscription {subscription.code} has expired: pay its invoices to bring "
                "it back.",
                code="invalid",
            )
        invoice = _invoice(subscription, max(subscription.renews_at, now or timezone.now()))
        unpaid = subscription.invoices.filter(paid_at=None).exists()  # type: ignore[attr-defined]
        subscription.state = Subscription.State.PAST_DUE if unpaid else Subscription.State.ACTIVE
        subscription.cancel_at_period_end = False
        subscription.save(update_fields=["state", "cancel_at_period_end"])
        _revive(subscription)  # a cancelled one that had ended
        _record(
            subscription,
            f"{subscription.code} renewed until {subscription.renews_at:%Y-%m-%d}",
            by=by,
        )
    return invoice


def cancel(subscription: Subscription, *, by: User | None) -> None:
    """At the end of the period paid for: it does not renew then."""
    if not subscription.is_live or subscription.cancel_at_period_end:
        raise ValidationError(
            f"The subscription {subscription.code} is already cancelled or over.", code="invalid"
        )
    with transaction.atomic():
        subscription.cancel_at_period_end = True
        subscription.save(update_fields=["cancel_at_period_end"])
        _record(
            subscription,
            f"{subscription.code} cancelled: it ends on {subscription.renews_at:%Y-%m-%d}",
            by=by,
        )


def pay(invoice: Invoice, *, now: datetime | None = None) -> None:
    """The operator marks the invoice paid; a subscription with nothing left unpaid is active
    (its expired databases live again)."""
    if invoice.paid_at is not None:
        raise ValidationError(f"{invoice.number} is already paid.", code="invalid")
    subscription = invoice.subscription
    with transaction.atomic():
        invoice.paid_at = now or timezone.now()
        invoice.save(update_fields=["paid_at"])
        if not subscription.invoices.filter(paid_at=None).exists() and subscription.state in (  # type: ignore[attr-defined]
            Subscription.State.PAST_DUE,
            Subscription.State.EXPIRED,
        ):
            # Its period starts again now: the months it was expired are not invoiced.
            now = now or timezone.now()
            subscription.state = Subscription.State.ACTIVE
            subscription.renews_at = max(subscription.renews_at, now)
            subscription.save(update_fields=["state", "renews_at"])
            _revive(subscription)
            _record(subscription, f"{subscription.code} paid: active again", by=None)


def owner_refusal(user: User) -> str | None:
    """Refuses an account deletion while a live subscription of it pays for a database: the
    databases would lose what pays for them without a word to their administrators."""
    paying = Subscription.objects.filter(
        owner=user, databases__name__isnull=False, state__in=LIVE_STATES
    ).distinct()
    codes = list(paying.values_list("code", flat=True))
    if not codes:
        return None
    return (
        f"Your subscription{'s' if len(codes) > 1 else ''} {', '.join(codes)} "
        f"{'pay' if len(codes) > 1 else 'pays'} for databases: unlink them or let "
        f"{'them' if len(codes) > 1 else 'it'} end first."
    )


# With time -----------------------------------------------------------------------------------


def sweep(now: datetime) -> None:
    """Renew or end subscriptions at their date, mark unpaid ones past due then expired, remind
    of trials' ends, and mark databases expired whose time has passed."""
    for subscription in Subscription.objects.filter(
        state__in=(
            Subscription.State.ACTIVE,
            Subscription.State.PAST_DUE,
            Subscription.State.TRIAL,
        ),
        renews_at__lte=now,
    ):
        with transaction.atomic():
            _lock(subscription)  # as it is now: renewed by its owner since it was read?
            if subscription.renews_at > now or subscription.state not in LIVE_STATES:
                continue
            if subscription.cancel_at_period_end:
                _end(subscription, Subscription.State.CANCELLED, "cancelled: its period ended")
            else:
                while subscription.renews_at <= now:
                    _invoice(subscription, subscription.renews_at, issued_at=now)
    grace = now - timedelta(days=settings.GRACE_DAYS)
    unpaid = Invoice.objects.filter(paid_at=None)
    for subscription in Subscription.objects.filter(
        state__in=(Subscription.State.ACTIVE, Subscription.State.PAST_DUE),
        invoices__in=unpaid.filter(issued_at__lte=now),
    ).distinct():
        with transaction.atomic():
            if subscription.invoices.filter(paid_at=None, issued_at__lte=grace).exists():  # type: ignore[attr-defined]
                _end(subscription, Subscription.State.EXPIRED, "expired: an invoice is unpaid")
            elif subscription.state != Subscription.State.PAST_DUE:
                subscription.state = Subscription.State.PAST_DUE
                subscription.save(update_fields=["state"])
    _remind_trials(now)
    # What expires_at says, in a field the sweep's clock sets (see Database.expired).
    Database.objects.filter(expired=False, expires_at__lte=now).update(expired=True)
    # A trial project's staging databases share their production's fate (or its deletion).
    Database.objects.filter(
        Q(project__production=None) | Q(project__production__expired=True),
        project__isnull=False, expired=False,
    ).update(expired=True)  # fmt: skip


def _end(subscription: Subscription, state: str, why: str) -> None:
    subscription.state = state
    subscription.save(update_fields=["state"])
    _record(subscription, f"{subscription.code} {why}", by=None)
    Database.objects.filter(quotas.paid_by([subscription.pk])).update(expired=True)


def _revive(subscription: Subscription) -> None:
    """Its databases (and its trial projects' staging ones) live again."""
    Database.objects.filter(quotas.paid_by([subscription.pk]), expires_at=None).update(
        expired=False
    )


def _remind_trials(now: datetime) -> None:
    trials = Database.objects.filter(
        status=Database.Status.ACTIVE, source=None, subscription=None, expired=False,
        expires_at__gt=now, expires_at__lte=now + timedelta(days=max(TRIAL_REMINDERS)),
    ).exclude(name=None)  # fmt: skip
    for database in trials:
        assert database.expires_at is not None
        left = database.expires_at - now
        days = min(d for d in TRIAL_REMINDERS if left <= timedelta(days=d))
        if database.trial_reminded_days is not None and database.trial_reminded_days <= days:
            continue
        admins = Membership.objects.filter(database=database, role=Membership.Role.ADMIN)
        context: dict[str, Any] = {"database": database, "days": days}
        for email in admins.values_list("user__email", flat=True):
            get_adapter().send_mail("billing/email/trial_ending", email, context)
        Database.objects.filter(pk=database.pk).update(trial_reminded_days=days)
