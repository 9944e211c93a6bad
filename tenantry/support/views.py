"""Contact support, My requests, and the support desk of Tenantry's staff.

A customer reaches only their own requests (404 for others'). The desk is for staff accounts
(`tenantry staff add`) who signed in again lately; it shows requests and what support may do to
a request's database, never the database's data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from allauth.account.decorators import reauthentication_required
from allauth.core import ratelimit
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.databases import activity, lifecycle, members
from tenantry.databases.models import Database, Membership
from tenantry.engines.base import EngineError
from tenantry.releases import upgrade
from tenantry.support import verbs
from tenantry.support.forms import DeskFilter, ExtendForm, LoginForm, ReplyForm, RequestForm
from tenantry.support.models import Attachment, Ticket

RATE_LIMITED = (
    "You have written to support many times in the last hour: wait a little, or add to a "
    "request you already sent."
)


def _sentence(error: ValidationError | EngineError) -> str:
    return " ".join(error.messages) if isinstance(error, ValidationError) else str(error)


def _refuse_past_rate(request: HttpRequest) -> None:
    """Only what is sent counts (after the verb): a refused message spends nothing."""
    if not ratelimit.consume(request, action="support", user=request.user, dry_run=True):
        raise ValidationError(RATE_LIMITED)


def _names(user: User) -> list[str]:
    found = Database.objects.for_account(user).exclude(name=None).order_by("name")
    return [name for name in found.values_list("name", flat=True) if name]


@login_required
def requests_list(request: HttpRequest) -> HttpResponse:
    tickets = verbs.requests_of(request.user).select_related("database")  # type: ignore[arg-type]
    page = Paginator(tickets, 25).get_page(request.GET.get("page"))
    return render(request, "support/requests.html", {"page": page})


@login_required
def new_request(request: HttpRequest) -> HttpResponse:
    """Contact support: pre-filled from the query (?database=&category=&subject=) of the link
    that led here. The database's details are shown, and saved from its record."""
    user: User = request.user  # type: ignore[assignment]
    names = _names(user)
    query = request.GET
    initial = {
        "database": query.get("database", "") if query.get("database") in names else "",
        "category": query.get("category", Ticket.Category.TECHNICAL),
        "subject": query.get("subject", "")[:200],
    }
    form = RequestForm(names, request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        database = None
        if data["database"]:
            database = Database.objects.for_account(user).get(name=data["database"])
        try:
            _refuse_past_rate(request)
            ticket = verbs.open_request(
                user, subject=data["subject"], body=data["description"],
                category=data["category"], database=database, files=data["attachments"],
            )  # fmt: skip
            ratelimit.consume(request, action="support", user=user)
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            messages.success(
                request,
                f"Your request {ticket.number} is sent. We answer by email and on this page.",
            )
            return redirect("support_request", ticket.pk)
    chosen = form.data.get("database") if form.is_bound else initial["database"]
    shown = Database.objects.for_account(user).filter(name=chosen).first() if chosen else None
    details = verbs.labelled(verbs.details(shown)) if shown else []
    return render(request, "support/new.html", {"form": form, "details": details})


@login_required
def request_page(request: HttpRequest, ticket_id: int) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    ticket = verbs.get_ticket(user, ticket_id)
    form = ReplyForm()
    if request.method == "POST":
        try:
            if request.POST.get("action") == "close":
                verbs.close(ticket)
                messages.success(request, f"The request {ticket.number} is closed.")
                return redirect("support_request", ticket.pk)
            form = ReplyForm(request.POST, request.FILES)
            if form.is_valid():
                _refuse_past_rate(request)
                data = form.cleaned_data
                verbs.reply(ticket, user, data["body"], data["attachments"])
                ratelimit.consume(request, action="support", user=user)
                messages.success(request, "Your reply is sent.")
                return redirect("support_request", ticket.pk)
        except ValidationError as error:
            form.add_error(None, _sentence(error))
    return render(request, "support/request.html", _conversation(ticket, form))


def _conversation(ticket: Ticket, form: ReplyForm, **more: Any) -> dict[str, Any]:
    return {
        "ticket": ticket,
        "details": verbs.labelled(ticket.details),
        "conversation": ticket.messages.select_related("author").prefetch_related("attachments"),  # type: ignore[attr-defined]
        "form": form,
        **more,
    }


def _file(attachment: Attachment) -> FileResponse:
    """Always a download, never shown by the browser: a file may be anything."""
    response = FileResponse(
        attachment.file.open("rb"), as_attachment=True, filename=attachment.name
    )
    response["Content-Type"] = "application/octet-stream"
    return response


def _attachment(ticket: Ticket, attachment_id: int) -> Attachment:
    found = Attachment.objects.filter(message__ticket=ticket, pk=attachment_id).first()
    if found is None:
        raise Http404("No such file.")
    return found


@login_required
def request_file(request: HttpRequest, ticket_id: int, attachment_id: int) -> FileResponse:
    ticket = verbs.get_ticket(request.user, ticket_id)  # type: ignore[arg-type]
    return _file(_attachment(ticket, attachment_id))


# The support desk.


def staff_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Staff accounts who signed in again within ACCOUNT_REAUTHENTICATION_TIMEOUT; to anyone
    else the desk does not exist (404)."""
    recent = reauthentication_required(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not (request.user.is_authenticated and request.user.is_staff):
            raise Http404("No such page.")
        return recent(request, *args, **kwargs)  # type: ignore[no-any-return]

    return wrapper


@staff_required
def desk(request: HttpRequest) -> HttpResponse:
    filters = DeskFilter(request.GET)
    tickets = Ticket.objects.select_related("account", "database")
    if filters.is_valid():
        if state := filters.cleaned_data["state"]:
            tickets = tickets.filter(state=state)
        if category := filters.cleaned_data["category"]:
            tickets = tickets.filter(category=category)
    page = Paginator(tickets, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request, "support/desk.html", {"filters": filters, "page": page, "query": query.urlencode()}
    )


# What staff may do to a request's database, by the form's `action`: each calls the verb as
# Tenantry (`by=None`), recorded as support's.
STAFF_ACTIONS = ("login", "extend", "unlink", "upgrade")


@staff_required
def desk_request(request: HttpRequest, ticket_id: int) -> HttpResponse:
    staff: User = request.user  # type: ignore[assignment]
    ticket = verbs.get_ticket(staff, ticket_id, staff=True)
    database = ticket.database if ticket.database and ticket.database.name else None
    emails = _member_emails(database) if database else []
    form, login_form, extend_form = ReplyForm(), LoginForm(emails), ExtendForm()
    action = request.POST.get("action", "")
    if request.method == "POST":
        try:
            if action == "close":
                verbs.close(ticket)
                messages.success(request, f"The request {ticket.number} is closed.")
                return redirect("desk_request", ticket.pk)
            if action == "answer":
                form = ReplyForm(request.POST, request.FILES)
                if form.is_valid():
                    data = form.cleaned_data
                    verbs.reply(ticket, staff, data["body"], data["attachments"], by_staff=True)
                    messages.success(request, f"Your answer is sent to {ticket.account.email}.")
                    return redirect("desk_request", ticket.pk)
            if action in STAFF_ACTIONS:
                if database is None:
                    raise Http404("The request's database is gone.")
                bound = {
                    "login": LoginForm(emails, request.POST),
                    "extend": ExtendForm(request.POST),
                }
                login_form, extend_form = bound["login"], bound["extend"]  # type: ignore[assignment]
                done = _staff_action(request, action, database, bound)
                if done:
                    messages.success(request, done)
                    return redirect("desk_request", ticket.pk)
        except (ValidationError, EngineError) as error:  # a database held by an operation
            target = {"login": login_form, "extend": extend_form, "answer": form}.get(action)
            if target is None:  # a button without a form: close, unlink, upgrade
                messages.error(request, _sentence(error))
            else:
                target.add_error(None, _sentence(error))
    context = _conversation(
        ticket, form, database=database, login_form=login_form, extend_form=extend_form,
        logins=_logins(database),
    )  # fmt: skip
    return render(request, "support/desk_request.html", context)


def _staff_action(
    request: HttpRequest, action: str, database: Database, forms: dict[str, Any]
) -> str | None:
    """The sentence of what was done, or None when a form has errors to show."""
    with activity.by_support(request):
        if action == "login":
            if not forms["login"].is_valid():
                return None
            email, login = (
                forms["login"].cleaned_data["account"],
                forms["login"].cleaned_data["login"],
            )
            account = User.objects.get(memberships__database=database, email=email)
            members.change_login(database, account, login, by=None)
            return f"{email} now signs in to “{database.name}” as {login.lower()}."
        if action == "extend":
            if not forms["extend"].is_valid():
                return None
            days = forms["extend"].cleaned_data["days"]
            lifecycle.extend(database, days, by=None)
            return f"“{database.name}” now lasts until {database.expires_at:%Y-%m-%d}."
        if action == "unlink":
            subscription = database.subscription
            if subscription is None:
                raise ValidationError(f"“{database.name}” is linked to no subscription.")
            subscriptions.unlink(subscription, database, by=None)
            return f"“{database.name}” is unlinked from {subscription.code}."
        operation = upgrade.retry(database, by=None)
        return f"The upgrade of “{database.name}” is started again (operation {operation.pk})."


def _logins(database: Database | None) -> dict[str, str]:
    """None for a database being made, moved or upgraded: it may not be there to open."""
    if database is None or database.status != Database.Status.ACTIVE:
        return {}
    try:
        return members.logins(database)
    except (EngineError, DatabaseError):
        return {}


def _member_emails(database: Database) -> list[str]:
    found = Membership.objects.filter(database=database).order_by("user__email")
    return list(found.values_list("user__email", flat=True))


@staff_required
def desk_file(request: HttpRequest, ticket_id: int, attachment_id: int) -> FileResponse:
    ticket = verbs.get_ticket(request.user, ticket_id, staff=True)  # type: ignore[arg-type]
    return _file(_attachment(ticket, attachment_id))
