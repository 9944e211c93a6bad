"""My subscriptions: the list, a subscription's page and its actions, subscribing. Every change
goes through the verbs of billing.subscriptions; their refusals show as form errors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render

from tenantry.accounts.models import User
from tenantry.billing import projects, quotas, subscriptions
from tenantry.billing.forms import (
    ClientLinkForm,
    LinkForm,
    PlanForm,
    RefreshForm,
    RenewForm,
    StagingForm,
    SubscribeForm,
    UnlinkForm,
    UsersForm,
)
from tenantry.billing.models import LIVE_STATES, Plan, Project, Subscription
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.operations.models import ACTIVE_STATES, Operation


def get_subscription(user: User, code: str) -> Subscription:
    """The account's own subscription with this code, or 404: nobody else learns it exists."""
    found = Subscription.objects.select_related("plan").filter(owner=user, code=code).first()
    if found is None:
        raise Http404(f"No subscription {code}.")
    return found


def linkable(user: User) -> QuerySet[Database]:
    """The databases the account administers that a subscription could take: not copies, and
    paid for by no live subscription."""
    # One filter() for both conditions: on the same membership, the account's.
    administered = Database.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.ADMIN
    )
    return (
        administered.exclude(name=None)
        .filter(source=None, status=Database.Status.ACTIVE)
        .exclude(subscription__state__in=LIVE_STATES)
    )


def linkable_names(user: User) -> list[str]:
    return [name for name in linkable(user).values_list("name", flat=True) if name]


def _database(user: User, name: str) -> Database:
    found = Database.objects.for_account(user).filter(name=name).first()
    if found is None:
        raise ValidationError(f"You have no database “{name}”.")
    return found


def _sentence(error: ValidationError) -> str:
    return " ".join(error.messages)


@login_required
def subscriptions_list(request: HttpRequest) -> HttpResponse:
    linked = Prefetch("databases", queryset=Database.objects.exclude(name=None))
    mine = (
        Subscription.objects.filter(owner=request.user.pk)
        .select_related("plan")
        .prefetch_related(linked)
        .order_by("-created_at", "code")
    )
    return render(request, "billing/subscriptions.html", {"subscriptions": mine})


@login_required
def subscribe(request: HttpRequest) -> HttpResponse:
    """Start a subscription; with a database to link at once (the manager's Subscribe link on
    a trial names it)."""
    user: User = request.user  # type: ignore[assignment]
    names = linkable_names(user)
    wanted = request.GET.get("database", "")
    initial = {"database": wanted if wanted in names else ""}
    form = SubscribeForm(names, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            database = _database(user, data["database"]) if data["database"] else None
            # Both or neither: a subscription started for a database it cannot take would be
            # one nobody asked for.
            with transaction.atomic():
                subscription = subscriptions.subscribe(
                    user, data["plan"], period=data["period"], users=data["users"], by=user
                )
                if database is not None:
                    subscriptions.link(subscription, database, by=user)
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            invoice = subscription.invoices.get()  # type: ignore[attr-defined]
            done = f"Your subscription {subscription.code} is active"
            if database is not None:
                done += f" and pays for “{database.name}”"
            messages.success(
                request,
                f"{done}. Its first invoice, {invoice.number}, is to be paid within "
                f"{settings.GRACE_DAYS} days.",
            )
            return redirect("subscription", subscription.code)
    # Reached for a database: the account's live subscriptions could take it instead.
    others = (
        Subscription.objects.filter(owner=user, state__in=LIVE_STATES)
        if initial["database"]
        else []
    )
    ctx = {
        "form": form, "database": initial["database"], "others": others,
        "grace_days": settings.GRACE_DAYS, "plans": Plan.objects.exists(),
    }  # fmt: skip
    return render(request, "billing/subscribe.html", ctx)


@login_required
def subscription(request: HttpRequest, code: str) -> HttpResponse:
    """Its details, linked databases and invoices; change its users or plan, renew it, link
    and unlink databases. Cancelling has a page of its own, to confirm."""
    user: User = request.user  # type: ignore[assignment]
    found = get_subscription(user, code)
    action = request.POST.get("action") if request.method == "POST" else None

    def data(name: str) -> Any:
        return request.POST if action == name else None

    names = linkable_names(user)
    chosen = request.GET.get("database", "")
    actions: dict[str, forms.Form] = {
        "users": UsersForm(data("users"), initial={"users": found.users}),
        "plan": PlanForm(data("plan"), initial={"plan": found.plan_id}),  # type: ignore[attr-defined]
        "renew": RenewForm(data("renew"), initial={"renews_at": found.renews_at}),
        "link": LinkForm(names, data("link"), initial={"database": chosen}),
        "unlink": UnlinkForm(data("unlink")),
    }
    if action is not None:
        form = actions.get(action)
        if form is None:
            return HttpResponseBadRequest("Unknown action.")
        if form.is_valid():
            try:
                done = _act(found, action, form.cleaned_data, by=user)
            except ValidationError as error:
                form.add_error(None, _sentence(error))
                found.refresh_from_db()  # as it is: the verb may have changed it in memory
            else:
                messages.success(request, done)
                return redirect("subscription", found.code)
    ctx = {
        "subscription": found,
        "price": found.plan.price(found.period),
        # Its owner unlinks any of them: it pays for them, administrator or not.
        "linked": found.databases.exclude(name=None),  # type: ignore[attr-defined]
        "invoices": found.invoices.all(),  # type: ignore[attr-defined]
        "forms": actions,
        "grace_days": settings.GRACE_DAYS,
    }
    return render(request, "billing/subscription.html", ctx)


def _act(subscription: Subscription, action: str, data: dict[str, Any], *, by: User) -> str:
    """Carry out the posted action; the sentence to show."""
    code = subscription.code
    if action == "users":
        subscriptions.change(subscription, users=data["users"], by=by)
        return f"{code} now has {subscription.users} users: the next invoice shows it."
    if action == "plan":
        subscriptions.change(subscription, plan=data["plan"], by=by)
        return f"{code} is now on the {subscription.plan.name} plan: the next invoice shows it."
    if action == "renew":
        invoice = subscriptions.renew(subscription, by=by, seen=data["renews_at"])
        return (
            f"{code} is renewed until {subscription.renews_at:%Y-%m-%d}: "
            f"{invoice.number} is issued."
        )
    if action == "link":
        database = _database(by, data["database"])
        subscriptions.link(subscription, database, by=by)
        return f"“{database.name}” is linked to {code}."
    # One it pays for: its owner may unlink it even when no longer its administrator.
    paid: Database | None = subscription.databases.filter(name=data["database"]).first()  # type: ignore[attr-defined]
    database = paid or _database(by, data["database"])  # one it does not pay for: refused
    subscriptions.unlink(subscription, database, by=by)
    return f"“{database.name}” is unlinked from {code}."


@login_required
def cancel(request: HttpRequest, code: str) -> HttpResponse:
    """Asks first: the subscription then ends with its period, and its databases expire."""
    user: User = request.user  # type: ignore[assignment]
    found = get_subscription(user, code)
    form = forms.Form(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            subscriptions.cancel(found, by=user)
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            messages.success(
                request, f"{found.code} is cancelled: it ends on {found.renews_at:%Y-%m-%d}."
            )
            return redirect("subscription", found.code)
    linked = found.databases.exclude(name=None).values_list("name", flat=True)  # type: ignore[attr-defined]
    ctx = {"subscription": found, "form": form, "linked": list(linked)}
    return render(request, "billing/cancel.html", ctx)


# Partners' trial projects


def get_project(user: User, project_id: int) -> Project:
    """A trial project of the partner's, or 404: nobody else learns it exists, not even the
    client who administers its databases."""
    found = (
        Project.objects.select_related("production__subscription__plan")
        .filter(partner=user, pk=project_id)
        .first()
    )
    # A partner the client removed from production has no project there any more.
    production = found.production if found else None
    if found is None or (production is not None and production.role_of(user) != "admin"):
        raise Http404(f"No trial project {project_id}.")
    return found


@login_required
def project(request: HttpRequest, project_id: int) -> HttpResponse:
    """Its production database, its staging copies (new, refresh), its storage, and the link
    to the client's subscription that takes it over."""
    user: User = request.user  # type: ignore[assignment]
    found = get_project(user, project_id)
    production = found.production
    action = request.POST.get("action") if request.method == "POST" else None

    def data(name: str) -> Any:
        return request.POST if action == name else None

    suggested = f"{production.name}-staging"[:63] if production else ""
    actions: dict[str, forms.Form] = {
        "staging": StagingForm(data("staging"), initial={"name": suggested}),
        "refresh": RefreshForm(data("refresh")),
        "link": ClientLinkForm(data("link")),
    }
    if action is not None:
        form = actions.get(action)
        if form is None:
            return HttpResponseBadRequest("Unknown action.")
        if form.is_valid():
            try:
                return _project_act(request, found, action, form.cleaned_data)
            except ValidationError as error:
                form.add_error(None, _sentence(error))
    # A staging copy being made is the target of its production's duplicate operation.
    active = Operation.objects.filter(
        Q(database=OuterRef("pk")) | Q(target=OuterRef("pk")), state__in=ACTIVE_STATES
    )
    staging = (
        found.databases.exclude(name=None)  # type: ignore[attr-defined]
        .annotate(operation_id=Subquery(active.values("pk")[:1]))
        .order_by("name")
    )
    if production is not None:
        staging = staging.exclude(pk=production.pk)
    used, limit = quotas.usage(production) if production else (0, None)
    paid_by = production.subscription if production else None
    ctx = {
        "project": found,
        "production": production,
        "staging": staging,
        "max_staging": quotas.MAX_STAGING,
        "used": used,
        "limit": limit,
        "warn": limit is not None and used * 100 >= min(quotas.WARNINGS) * limit,
        # The client's live subscription pays for it: nothing more to link.
        "paid_by": paid_by if paid_by is not None and paid_by.is_live else None,
        "forms": actions,
    }
    return render(request, "billing/project.html", ctx)


def _project_act(
    request: HttpRequest, project: Project, action: str, data: dict[str, Any]
) -> HttpResponse:
    """Carry out the posted action: the operation's progress page, or the project's with the
    sentence to show."""
    user: User = request.user  # type: ignore[assignment]
    production = project.production
    if production is None:
        raise ValidationError("The production database of this project was deleted.")
    if action == "link":
        code = data["code"]
        subscription = Subscription.objects.select_related("plan").filter(code=code).first()
        if subscription is None:
            raise ValidationError(subscriptions.cannot_link(code, production))
        subscriptions.link(subscription, production, by=user)
        messages.success(
            request,
            f"“{production.name}” is linked to {code}: the project now counts against "
            "its plan's storage, and your partnership code no longer applies to it.",
        )
        return redirect("project", project.pk)
    # Both copy production's data into a database the partner reads: he must still administer
    # production (a client may have removed him from it).
    _refuse_unless_admin(production, user, "copy its data into a staging database")
    if action == "staging":
        operation = lifecycle.start_duplicate(production, data["name"], for_testing=True, by=user)
        return redirect("operation", operation.pk)
    staging = project.databases.exclude(name=None).filter(name=data["database"]).first()  # type: ignore[attr-defined]
    if staging is None:
        raise ValidationError(f"“{data['database']}” is not a database of this project.")
    _refuse_unless_admin(staging, user, "refresh it")
    operation = projects.start_refresh(staging, by=user)
    return redirect("operation", operation.pk)


def _refuse_unless_admin(database: Database, user: User, what: str) -> None:
    if database.role_of(user) != Membership.Role.ADMIN:
        raise ValidationError(f"Only administrators of “{database.name}” {what}.", code="forbidden")
