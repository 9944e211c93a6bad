"""The workspace app's pages: sign-in, home, contacts, companies, attachments, My Preferences,
users, outgoing mail.

Each request runs with the database's tenant connection open (see `page`); `request.database`
is its record, set by the gateway. Contacts and companies are read with the models of the
database's release (see releases.py): a database at 1.1 has no companies table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import OperationalError, connections, transaction
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from tenantry.billing import quotas
from tenantry.databases.models import ConnectToken, Database
from tenantry.engines import filestore
from tenantry.engines.base import DatabaseHeld, EngineError
from tenantry.gateway.middleware import page as page_html
from tenantry.gateway.middleware import portal_hosts
from tenantry.operations.models import Operation
from tenantry.workspace import auth, jobs, releases, tenant
from tenantry.workspace import models as ws
from tenantry.workspace.forms import (
    CodeForm,
    DatabasePasswordForm,
    MessageForm,
    PreferencesForm,
    SignInForm,
    UploadForm,
    company_kind,
    contact_form,
)
from tenantry.workspace.mail import discard_held, is_on, queue_mail, release_held

View = Callable[..., HttpResponseBase]
logger = logging.getLogger(__name__)
UNREACHABLE = "This database cannot be reached right now. Try again in a few minutes."
# A write refused while its database moves waits this long for the switch (then the 503).
MOVE_WAIT_SECONDS = 60
SENT_SHOWN = 50  # the outgoing mail page lists the latest sent mails, not years of them


def page(view: View | None = None, *, admin: bool = False, public: bool = False) -> Any:
    """Open the database for the request; ask for sign-in unless `public`.

    A request that finds its database moved (another server, or another physical database
    after a restore) runs again, once, where it now is: a write refused while the database
    moves waits for the switch first, as a request waits for a duplicate.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            for again in (False, True):
                database = request.database  # type: ignore[attr-defined]
                try:
                    return _serve(request, view, args, kwargs, admin=admin, public=public)
                except DatabaseHeld as error:
                    # Safe to run again: a session refused a write because it was opened once
                    # the database was read-only, so every write of it was refused (one opened
                    # before was waited for, or ended, before the copy began), and the view
                    # stopped at the first.
                    moved = None if again else _moved(database, wait=True)
                    if moved is None:
                        return _unavailable(database, str(error))
                except (_NotOpened, EngineError, OperationalError) as error:
                    # Safe to run again only if the connection never opened: nothing ran.
                    opened = not isinstance(error, _NotOpened)
                    moved = None if again or opened else _moved(database, wait=False)
                    if moved is None:
                        logger.exception("Database %s unreachable", database)
                        return _unavailable(database, UNREACHABLE)
                request.database = moved  # type: ignore[attr-defined]
            raise AssertionError("unreachable: the second attempt returns")

        return wrapper

    return decorate(view) if view else decorate


class _NotOpened(Exception):
    """The database's connection could not be opened: nothing of the view ran."""


def _serve(
    request: HttpRequest,
    view: View,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    admin: bool,
    public: bool,
) -> HttpResponseBase:
    database = request.database  # type: ignore[attr-defined]
    with tenant.using(database) as db:
        try:
            # Opened first: a failure to open it is told apart from one in the view.
            connections[db].ensure_connection()
        except OperationalError as error:
            raise _NotOpened(str(error)) from error
        request.db = db  # type: ignore[attr-defined]
        user = auth.current_user(request, db)
        request.ws_user = user  # type: ignore[attr-defined]
        request.manager_url = _manager_url(request)  # type: ignore[attr-defined]
        # The menu links the companies page only where there is one.
        request.has_companies = company_kind(database.release) == "row"  # type: ignore[attr-defined]
        if user is None and not public:
            return redirect(f"/login/?next={quote(request.path)}")
        if admin and not (user and user.is_admin):
            return HttpResponse("Only administrators of this database see this.", status=403)
        return view(request, *args, **kwargs)


def _moved(database: Database, *, wait: bool) -> Database | None:
    """The database's record if it is no longer where the request found it; with `wait`,
    once the move that holds it has switched it to its new server, or ended. None when it did
    not move, no move holds it, or the move outlasts MOVE_WAIT_SECONDS."""
    deadline, waited = time.monotonic() + MOVE_WAIT_SECONDS, False
    while True:
        found = Database.objects.select_related("server").filter(
            pk=database.pk, status=Database.Status.ACTIVE
        )
        fresh = found.first()
        if fresh is None:
            return None
        if (fresh.server_id, fresh.physical_name) != (database.server_id, database.physical_name):
            return fresh
        if not wait:
            return None
        moving = Operation.objects.filter(
            database=database.pk, kind="move", state=Operation.State.RUNNING
        )
        if not moving.exists():  # none, or it ended without a switch (the source is writable)
            return fresh if waited else None
        if time.monotonic() > deadline:
            return None
        waited = True
        time.sleep(0.1)


def _unavailable(database: Any, message: str) -> HttpResponse:
    """503, in the portal's look, with when to come back."""
    body = page_html("workspace/unavailable.html", database=database, message=message)
    return HttpResponse(body, status=503, headers={"Retry-After": "60"})


def _manager_url(request: HttpRequest) -> str:
    """The portal's "My databases", for a session opened with the linked account (Connect or
    the account password); one opened with a database password has no portal session behind
    it, and may be someone who never uses the portal."""
    data = request.session.get(auth.SESSION_KEY) or {}
    if data.get("account") is None:
        return ""
    return settings.PORTAL_URL + reverse("databases", urlconf=settings.ROOT_URLCONF)


def _next(request: HttpRequest) -> str:
    target = request.GET.get("next", "/")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}) and target.startswith("/"):
        return target
    return "/"


@sensitive_post_parameters("password")
@page(public=True)
def sign_in(request: HttpRequest) -> HttpResponse:
    if request.ws_user:  # type: ignore[attr-defined]
        return redirect(_next(request))
    form = SignInForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            done = auth.check_credentials(request, request.db, data["login"], data["password"])  # type: ignore[attr-defined]
        except auth.SignInError as error:
            form.add_error(None, str(error))
        else:
            if done:
                return redirect(_next(request))
            return redirect(f"/login/code/?next={quote(_next(request))}")
    return render(request, "workspace/login.html", {"form": form})


@sensitive_post_parameters("code")
@page(public=True)
def code(request: HttpRequest) -> HttpResponse:
    if auth.pending(request) is None:
        return redirect("/login/")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            auth.check_code(request, request.db, form.cleaned_data["code"])  # type: ignore[attr-defined]
        except auth.SignInError as error:
            form.add_error("code", str(error))
        else:
            return redirect(_next(request))
    return render(request, "workspace/code.html", {"form": form})


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    auth.sign_out(request)
    return redirect("/login/")


def _posted_by_the_portal(request: HttpRequest) -> bool:
    """Connect's form comes from the portal's page, at one of the portal's hosts (it has the
    browser send its origin: see databases.views.connect). A page elsewhere posting the
    attacker's own token would sign the visitor in to the attacker's database (login CSRF)."""
    portal = urlsplit(settings.PORTAL_URL)
    default = {"http": 80, "https": 443}.get(portal.scheme)
    port = f":{portal.port}" if portal.port and portal.port != default else ""
    origins = {f"{portal.scheme}://{host}{port}" for host in portal_hosts()}
    return request.headers.get("Origin") in origins


@csrf_exempt  # the portal's origin and the single-use token are the proof
@sensitive_post_parameters("token")
@require_POST
@page(public=True)
def connect(request: HttpRequest) -> HttpResponse:
    if not _posted_by_the_portal(request):
        return render(request, "workspace/connect_failed.html", status=403)
    account = ConnectToken.redeem(request.database, request.POST.get("token", ""))  # type: ignore[attr-defined]
    user = None
    if account is not None:
        users = ws.User.objects.using(request.db)  # type: ignore[attr-defined]
        user = users.filter(account_id=account.pk, is_active=True).first()
    if user is None or account is None:
        return render(request, "workspace/connect_failed.html", status=400)
    auth.sign_in(request, user, account)
    return redirect("/")


@page
def home(request: HttpRequest) -> HttpResponse:
    db = request.db  # type: ignore[attr-defined]
    figures = {
        "contacts": _contacts(request).count(),
        "attachments": ws.Attachment.objects.using(db).count(),
        "users": ws.User.objects.using(db).filter(is_active=True).count(),
        "mails": ws.Mail.objects.using(db).filter(state=ws.Mail.State.SENT).count(),
    }
    return render(request, "workspace/home.html", {"figures": figures})


def _contacts(request: HttpRequest) -> QuerySet[Any]:
    """The database's contacts as its release has them; since 2.0 with their company, in the
    same query."""
    release = request.database.release  # type: ignore[attr-defined]
    rows = releases.model(release, "Contact").objects.using(request.db).all()  # type: ignore[attr-defined]
    return rows.select_related("company") if company_kind(release) == "row" else rows


@page
def contacts(request: HttpRequest) -> HttpResponse:
    db, release = request.db, request.database.release  # type: ignore[attr-defined]
    form = contact_form(release)(request.POST or None)
    if request.method == "POST" and form.is_valid():
        contact = form.save_to(db)
        messages.success(request, f"“{contact.name}” was added.")  # type: ignore[attr-defined]
        return redirect("ws_contacts")
    ctx = {"form": form, "contacts": _contacts(request), "company": company_kind(release)}
    return render(request, "workspace/contacts.html", ctx)


@page
def contact(request: HttpRequest, pk: int) -> HttpResponse:
    db, release = request.db, request.database.release  # type: ignore[attr-defined]
    found = _contacts(request).filter(pk=pk).first()
    if found is None:
        raise Http404("No such contact.")
    sending = request.POST.get("action") == "send"
    form = contact_form(release)(None if sending else request.POST or None, instance=found)
    message = MessageForm(request.POST if sending else None)
    if request.method == "POST" and not sending and form.is_valid():
        form.save_to(db)
        messages.success(request, f"“{found.name}” was saved.")
        return redirect("ws_contacts")
    if sending and message.is_valid():
        if not found.email:
            message.add_error(None, f"“{found.name}” has no email address.")
        else:
            data = message.cleaned_data
            mail = queue_mail(db, found.email, data["subject"], data["body"])
            if mail.state == ws.Mail.State.HELD:
                messages.warning(
                    request,
                    f"The message to {found.email} is held: this is a test copy, "
                    "external mail is off.",
                )
            else:
                database_id = request.database.pk  # type: ignore[attr-defined]
                transaction.on_commit(lambda: jobs.send_now.enqueue(database_id), using=db)
                messages.success(request, f"The message to {found.email} is queued.")
            return redirect("ws_contact", pk=pk)
    ctx = {"form": form, "message": message, "contact": found}
    return render(request, "workspace/contact.html", ctx)


@page
def companies(request: HttpRequest) -> HttpResponse:
    """Since release 2.0: the companies, with how many contacts each has (and, since 2.1, the
    email domain they share)."""
    release = request.database.release  # type: ignore[attr-defined]
    if company_kind(release) != "row":
        raise Http404("This database's release has no companies.")
    Company = releases.model(release, "Company")
    rows = Company.objects.using(request.db).annotate(contact_count=Count("contacts"))  # type: ignore[attr-defined]
    has_domain = any(f.name == "domain" for f in Company._meta.fields)
    ctx = {"companies": rows, "has_domain": has_domain}
    return render(request, "workspace/companies.html", ctx)


@page
def attachments(request: HttpRequest) -> HttpResponse:
    db = request.db  # type: ignore[attr-defined]
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:  # a trial project's 1 GB, a plan's storage
            quotas.refuse_growth(request.database, upload.size, f"“{upload.name}”")  # type: ignore[attr-defined]
        except ValidationError as error:
            form.add_error("file", error)
        else:
            sha256, size = filestore.store(request.database.physical_name, upload.chunks())  # type: ignore[attr-defined]
            mimetype = upload.content_type or ""  # the browser's word: no real one is that long
            ws.Attachment.objects.using(db).create(
                name=upload.name, sha256=sha256, size=size,
                mimetype=mimetype if 0 < len(mimetype) <= 100 else "application/octet-stream",
            )  # fmt: skip
            quotas.measure(request.database)  # type: ignore[attr-defined]
            messages.success(request, f"“{upload.name}” was uploaded.")
            return redirect("ws_attachments")
    rows = ws.Attachment.objects.using(db).order_by("-created_at", "-id")
    return render(request, "workspace/attachments.html", {"form": form, "attachments": rows})


@page
def attachment(request: HttpRequest, pk: int) -> FileResponse:
    found = ws.Attachment.objects.using(request.db).filter(pk=pk).first()  # type: ignore[attr-defined]
    if found is None:
        raise Http404("No such attachment.")
    try:
        path = filestore.path(request.database.physical_name, found.sha256)  # type: ignore[attr-defined]
        file = path.open("rb")
    except FileNotFoundError:
        raise Http404("This attachment's file is missing.") from None
    return FileResponse(file, as_attachment=True, filename=found.name, content_type=found.mimetype)


@sensitive_post_parameters("current_password", "new_password", "confirm_password")
@page
def preferences(request: HttpRequest) -> HttpResponse:
    db, user = request.db, request.ws_user  # type: ignore[attr-defined]
    action = request.POST.get("action")
    profile = PreferencesForm(request.POST if action == "profile" else None, instance=user)
    password = DatabasePasswordForm(request.POST if action in ("set", "clear") else None)
    if action == "profile" and profile.is_valid():
        profile.save(commit=False).save(using=db)
        messages.success(request, "Your preferences are saved.")
        return redirect("ws_preferences")
    if action in ("set", "clear") and password.is_valid():
        try:
            auth.confirm_password(request, user, password.cleaned_data["current_password"])
        except auth.SignInError as error:
            password.add_error("current_password", str(error))
        else:
            new = password.cleaned_data["new_password"] if action == "set" else ""
            user.password = make_password(new) if new else ""
            user.save(using=db, update_fields=["password"])
            auth.refresh(request, user)
            messages.success(
                request,
                "Your database password is set." if new else "Your database password is removed.",
            )
            return redirect("ws_preferences")
    ctx = {"profile": profile, "password": password, "support_url": _support_url(request)}
    return render(request, "workspace/preferences.html", ctx)


def _support_url(request: HttpRequest) -> str:
    """The portal's Contact support, pre-filled to change one's login: only Tenantry's support
    changes a login (product.md, section 2), not the user nor the database's administrators."""
    query = {
        "database": request.database.name,  # type: ignore[attr-defined]
        "category": "account",
        "subject": "Change my login",
    }
    path = reverse("support_new", urlconf=settings.ROOT_URLCONF)
    return f"{settings.PORTAL_URL}{path}?{urlencode(query)}"


@page(admin=True)
def users(request: HttpRequest) -> HttpResponse:
    rows = ws.User.objects.using(request.db).order_by("login")  # type: ignore[attr-defined]
    return render(request, "workspace/users.html", {"users": rows})


@page(admin=True)
def outgoing_mail(request: HttpRequest) -> HttpResponse:
    """What the database sends, for its administrators: a restored copy holds the mails the
    original had queued until they release (or discard) them."""
    db = request.db  # type: ignore[attr-defined]
    action = request.POST.get("action")
    if request.method == "POST" and action == "release":
        try:
            count = release_held(db)
        except ValidationError as error:
            messages.error(request, error.messages[0])
        else:
            messages.success(
                request,
                f"{count} mail{pluralize(count)} released: sent at the next run of the "
                "sending job.",
            )
        return redirect("ws_mail")
    if request.method == "POST" and action == "discard":
        count = discard_held(db)
        messages.success(request, f"{count} held mail{pluralize(count)} discarded.")
        return redirect("ws_mail")
    mails = ws.Mail.objects.using(db)
    ctx = {
        "mail_on": is_on(db),
        "held": mails.filter(state=ws.Mail.State.HELD).order_by("created_at", "id"),
        "queued": mails.filter(state=ws.Mail.State.QUEUED).order_by("created_at", "id"),
        "sent": mails.filter(state=ws.Mail.State.SENT).order_by("-sent_at", "-id")[:SENT_SHOWN],
    }
    return render(request, "workspace/mail.html", ctx)
