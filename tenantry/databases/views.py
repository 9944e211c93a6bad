from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.decorators import reauthentication_required
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tenantry.accounts.models import User
from tenantry.backups import archive, restore, store
from tenantry.backups.models import Backup
from tenantry.billing import projects, quotas, subscriptions
from tenantry.billing.forms import ProjectForm
from tenantry.databases import activity, lifecycle, members
from tenantry.databases.access import (
    as_pk,
    database_admin_required,
    get_backup,
    get_database,
    get_operation,
    get_upgrade,
    upgrades_for,
)
from tenantry.databases.forms import (
    CreateForm,
    DeleteForm,
    DuplicateForm,
    InviteForm,
    RenameForm,
    RestoreForm,
    UpgradeForm,
)
from tenantry.databases.models import Activity, ConnectToken, Database, Invitation, Membership
from tenantry.engines.base import EngineError
from tenantry.operations.models import ACTIVE_STATES, Operation
from tenantry.releases import upgrade
from tenantry.releases.models import Published, Upgrade, version_key


@login_required
def manager(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    posted = request.POST or None
    # Two forms post here: a new database, and a partner's new trial project (prefixed).
    new_project = posted is not None and "project-name" in posted
    form = CreateForm(None if new_project else posted)
    project_form = ProjectForm(posted if new_project else None, prefix="project")
    if form.is_bound and form.is_valid():
        try:
            database = lifecycle.create(form.cleaned_data["name"], by=user)
        except (ValidationError, EngineError) as error:
            form.add_error("name", _sentence(error))
        else:
            messages.success(request, f"“{database.name}” is ready at {database.url}.")
            return redirect("databases")
    if project_form.is_bound and project_form.is_valid():
        try:
            project = projects.start_project(project_form.cleaned_data["name"], by=user)
        except (ValidationError, EngineError) as error:
            project_form.add_error("name", _sentence(error))
        else:
            production = project.production
            assert production is not None
            messages.success(
                request,
                f"Your trial project is ready: its production database is at {production.url}.",
            )
            return redirect("project", project.pk)
    active = Operation.objects.filter(database=OuterRef("database"), state__in=ACTIVE_STATES)
    last_upgrade = Upgrade.objects.filter(database=OuterRef("database")).order_by("-started_at")
    memberships = (
        Membership.objects.filter(user=user.pk, database__name__isnull=False)
        .select_related("database__subscription", "database__project")
        .annotate(
            operation_id=Subquery(active.values("pk")[:1]),
            upgrade_id=Subquery(last_upgrade.values("pk")[:1]),
        )
        .order_by("database__name")
    )
    ctx = {
        "form": form,
        # For partners; and for whoever posted it, to read the refusal.
        "project_form": project_form if user.partner_code or new_project else None,
        "memberships": memberships,
        "usage": quotas.usages([m.database for m in memberships]),
        "over": subscriptions.users_over([m.database for m in memberships]),
    }
    return render(request, "databases/manager.html", ctx)


@login_required
@require_POST
def connect(request: HttpRequest, name: str) -> HttpResponse:
    """Hand a single-use token to the database, in a form posted at once: never in a URL."""
    database, _ = get_database(request.user, name)  # type: ignore[arg-type]
    if database.status != Database.Status.ACTIVE or database.is_expired:
        messages.error(request, f"“{database.name}” cannot be opened now.")
        return redirect("databases")
    token = ConnectToken.issue(database, request.user)  # type: ignore[arg-type]
    response = render(request, "databases/connect.html", {"database": database, "token": token})
    response["Cache-Control"] = "no-store"
    # The database checks that its sign-in comes from here: the form's post must carry the
    # portal's origin (under the site-wide "same-origin" policy, browsers send "null").
    response["Referrer-Policy"] = "strict-origin"
    return response


@database_admin_required
def duplicate(request: HttpRequest, database: Database) -> HttpResponse:
    form = DuplicateForm(request.POST or None, initial={"name": f"{database.name}-copy"[:63]})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            operation = lifecycle.start_duplicate(
                database,
                data["name"],
                for_testing=data["for_testing"],
                by=request.user,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            return redirect("operation", operation.pk)
    return render(request, "databases/duplicate.html", {"database": database, "form": form})


@database_admin_required
def upgrade_database(request: HttpRequest, database: Database) -> HttpResponse:
    """Test the upgrade on a copy, or upgrade the database itself."""
    published = Published()
    form = UpgradeForm(published.offered(database.release), request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        test = data["kind"] == "test"
        try:
            operation = upgrade.start(database, data["release"], test=test, by=request.user)  # type: ignore[arg-type]
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            return redirect("operation", operation.pk)
    ctx = {
        "database": database,
        "form": form,
        "deadline": upgrade.deadline(database, published),
        "major": published.major,
        "deprecated": database.release in published.deprecated,
    }
    return render(request, "databases/upgrade.html", ctx)


@login_required
def upgrade_report(request: HttpRequest, upgrade_id: int) -> HttpResponse:
    report = get_upgrade(request.user, upgrade_id)  # type: ignore[arg-type]
    ctx = {
        "report": report,
        "offer_production": _offers_production(request.user, report),  # type: ignore[arg-type]
    }
    return render(request, "databases/upgrade_report.html", ctx)


def _offers_production(user: User, report: Upgrade) -> bool:
    """After a successful test upgrade, the upgrade itself is one click away, for the
    administrators of a database still below that release."""
    database = report.database
    return (
        report.test
        and report.state == Upgrade.State.SUCCEEDED
        and database is not None
        and database.name is not None
        and version_key(database.release) < version_key(report.to_release)
        and database.role_of(user) == Membership.Role.ADMIN
    )


@database_admin_required
def download(request: HttpRequest, database: Database) -> StreamingHttpResponse:
    return backup_response(database, by=request.user)  # type: ignore[arg-type]


def backup_response(database: Database, *, by: User) -> StreamingHttpResponse:
    """The backup ZIP, streamed: the first bytes leave at once, whatever the size."""
    activity.record(database, activity.Kind.DOWNLOAD, by=by, detail="its current state")
    response = StreamingHttpResponse(archive.stream(database), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{archive.filename(database)}"'
    return response


@database_admin_required
def backups(request: HttpRequest, database: Database) -> HttpResponse:
    stored = database.backups.stored()  # type: ignore[attr-defined]
    return render(request, "databases/backups.html", {"database": database, "backups": stored})


@database_admin_required
def backup_download(request: HttpRequest, database: Database, backup_id: int) -> HttpResponseBase:
    backup = get_backup(request.user, backup_id, database)  # type: ignore[arg-type]
    return stored_backup_response(database, backup, by=request.user)  # type: ignore[arg-type]


def stored_backup_response(database: Database, backup: Backup, *, by: User) -> HttpResponseBase:
    detail = f"the {backup.kind} backup of {backup.created_at:%Y-%m-%d %H:%M}"
    activity.record(database, activity.Kind.DOWNLOAD, by=by, detail=detail)
    return store.response(backup, database.name or "")


@login_required
def restore_new(request: HttpRequest) -> HttpResponse:
    return _restore(request, None)


RESTORE_PASS = "tenantry.restore-over"  # the pass's signing salt


def _restore_pass(request: HttpRequest) -> str:
    """Handed out with the form of a restore over a database, once the password was asked
    again: its upload may outlast the re-authentication, and a POST resumed after one has
    lost its file."""
    return signing.dumps([request.session.session_key, request.path], salt=RESTORE_PASS)


def _has_restore_pass(request: HttpRequest) -> bool:
    try:
        found = signing.loads(request.POST.get("pass", ""), salt=RESTORE_PASS, max_age=3600)
    except signing.BadSignature:
        return False
    return bool(found == [request.session.session_key, request.path])


@database_admin_required
# It replaces the database: the password again, on opening the page (its form carries a pass).
@reauthentication_required(enabled=lambda request: not _has_restore_pass(request))
def restore_over(request: HttpRequest, database: Database) -> HttpResponse:
    return _restore(request, database)


def _restore(request: HttpRequest, database: Database | None) -> HttpResponse:
    """Restore a stored backup of the database, or a ZIP sent with the form."""
    chosen = request.GET.get("backup") or request.POST.get("backup")
    backup = get_backup(request.user, chosen, database) if database and chosen else None  # type: ignore[arg-type]
    form = RestoreForm(database, backup is not None, request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            source = backup or restore.keep_upload(data["file"], request.user)  # type: ignore[arg-type]
            target = database if data.get("into") == "over" else data["name"]
            operation = restore.start(
                source, target, by=request.user,  # type: ignore[arg-type]
                as_copy=data["identity"] == "copy", neutralize=data["neutralize"],
            )  # fmt: skip
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            return redirect("operation", operation.pk)
    restore_pass = _restore_pass(request) if database else ""
    ctx = {"database": database, "backup": backup, "form": form, "restore_pass": restore_pass}
    return render(request, "databases/restore.html", ctx)


@database_admin_required
def rename(request: HttpRequest, database: Database) -> HttpResponse:
    old_name = database.name
    form = RenameForm(request.POST or None, initial={"name": database.name})
    if request.method == "POST" and form.is_valid():
        try:
            lifecycle.rename(database, form.cleaned_data["name"], by=request.user)  # type: ignore[arg-type]
        except ValidationError as error:
            form.add_error("name", _sentence(error))
        else:
            messages.success(request, f"“{old_name}” is now “{database.name}” at {database.url}.")
            return redirect("databases")
    return render(request, "databases/rename.html", {"database": database, "form": form})


@database_admin_required
@reauthentication_required(allow_get=True)  # asked on confirming, which then goes on
def delete(request: HttpRequest, database: Database) -> HttpResponse:
    form = DeleteForm(database, request.POST or None)
    refusal = database.deletion_refusal()
    if request.method == "POST" and form.is_valid():  # a refusal is the verb's, recorded
        try:
            operation = lifecycle.start_delete(database, by=request.user)  # type: ignore[arg-type]
        except ValidationError as error:
            form.add_error(None, _sentence(error))
        else:
            return redirect("operation", operation.pk)
    ctx = {"database": database, "form": form, "refusal": refusal}
    return render(request, "databases/delete.html", ctx)


ACTIVITY_PAGE = 50


@login_required
def activity_log(request: HttpRequest, name: str) -> HttpResponse:
    """Who did what to the database, newest first; its administrators only (404 to others,
    who are not told that it exists or what it is)."""
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    if role != Membership.Role.ADMIN:
        raise Http404("No such database.")
    entries = database.activity.all()  # type: ignore[attr-defined]
    return _activity_page(request, entries, {"database": database})


@login_required
def deleted_activity(request: HttpRequest) -> HttpResponse:
    """The activity of the account's deleted databases: kept for their owner."""
    entries = Activity.objects.filter(database=None, owner=request.user.pk)
    return _activity_page(request, entries, {"database": None})


def _activity_page(request: HttpRequest, entries: Any, ctx: dict[str, Any]) -> HttpResponse:
    kind = request.GET.get("kind", "")
    if kind in Activity.Kind.values:
        entries = entries.filter(kind=kind)
    page = Paginator(entries, ACTIVITY_PAGE).get_page(request.GET.get("page"))
    ctx |= {"page": page, "kind": kind, "kinds": Activity.Kind.choices}
    ctx["days"] = settings.ACTIVITY_DAYS
    return render(request, "databases/activity.html", ctx)


@login_required
def operation(request: HttpRequest, operation_id: int) -> HttpResponse:
    op = get_operation(request.user, operation_id)  # type: ignore[arg-type]
    report = None
    if op.kind == "upgrade":  # its report, for those who may read it (not every member)
        report = upgrades_for(request.user).filter(operation=op).first()  # type: ignore[arg-type]
    # htmx polls the progress part alone while the operation runs.
    template = (
        "databases/_progress.html"
        if request.headers.get("HX-Request")
        else "databases/operation.html"
    )
    return render(request, template, {"operation": op, "report": report})


def _sentence(error: BaseException) -> str:
    """A refusal (a ValidationError) or a storage failure (an EngineError), as the portal
    shows it."""
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)


# Removing someone, or changing who administers the database: the password again.
MEMBER_CHANGES = ("remove", "admin", "user")


@database_admin_required
@reauthentication_required(enabled=lambda request: request.POST.get("action") in MEMBER_CHANGES)
def users(request: HttpRequest, database: Database) -> HttpResponse:
    """Members and pending invitations; invite, resend, cancel, remove, promote, demote."""
    action = request.POST.get("action")
    form = InviteForm(request.POST if action == "invite" else None)
    if request.method == "POST":
        try:
            done = _users_action(request, database, action, form)
        except (ValidationError, EngineError) as error:
            messages.error(request, _sentence(error))
        else:
            if done:
                messages.success(request, done)
                return redirect("database_users", database.name)
    ctx = {
        "database": database,
        "form": form,
        "memberships": database.memberships.select_related("user").order_by("user__email"),  # type: ignore[attr-defined]
        "invitations": database.invitations.filter(accepted_at=None),  # type: ignore[attr-defined]
        "over_quota": over_quota(database),
    }
    return render(request, "databases/users.html", ctx)


def over_quota(database: Database) -> str | None:
    """What its administrators are told when the database's subscription pays for fewer users
    than it has: those counted by billing.subscriptions.users_taken, across every database it
    pays for (a person in two of them is one user), which is what inviting is held to."""
    subscription = database.subscription
    if subscription is None:
        return None
    counted = len(subscriptions.users_taken(subscription))
    if counted <= subscription.users:
        return None
    return (
        f"{counted} of {subscription.users} users: over by {counted - subscription.users}. "
        f"The subscription {subscription.code} pays for {subscription.users}: its owner adds "
        "users to it on My subscriptions; or remove users or pending invitations here."
    )


def _users_action(
    request: HttpRequest, database: Database, action: str | None, form: InviteForm
) -> str | None:
    """Carry out the posted action; the sentence to show, or None to show the form again."""
    if action == "invite":
        if not form.is_valid():
            return None
        data = form.cleaned_data
        sent = members.invite(database, data["emails"], data["role"], by=request.user)  # type: ignore[arg-type]
        return f"Invitation sent to {', '.join(i.email for i in sent)}."
    if action in ("resend", "cancel"):
        invitation = database.invitations.filter(  # type: ignore[attr-defined]
            accepted_at=None, pk=as_pk(request.POST.get("invitation"))
        ).first()
        if invitation is None:
            raise ValidationError("This invitation is no longer pending.")
        if action == "cancel":
            return members.cancel(invitation, by=request.user)  # type: ignore[arg-type]
        members.resend(invitation, by=request.user)  # type: ignore[arg-type]
        return f"The invitation of {invitation.email} is sent again."
    chosen = list(
        User.objects.filter(memberships__database=database, email__in=request.POST.getlist("email"))
    )
    if not chosen:
        raise ValidationError("Select at least one user.")
    if action == "remove":
        members.remove(database, chosen, by=request.user)  # type: ignore[arg-type]
        return f"Removed: {', '.join(u.email for u in chosen)}."
    if action in ("admin", "user"):
        for account in chosen:
            members.set_role(database, account, action, by=request.user)  # type: ignore[arg-type]
        role = "administrators" if action == "admin" else "users"
        return f"Now {role}: {', '.join(u.email for u in chosen)}."
    raise ValidationError("Unknown action.")


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The link of an invitation email: accept it, signed in with the invited address."""
    try:
        found = members.check(Invitation.find(token))
    except ValidationError as error:
        return render(request, "databases/invitation.html", {"error": _sentence(error)}, status=400)
    ctx: dict[str, Any] = {"invitation": found, "has_account": False}
    if not request.user.is_authenticated:
        # Whoever holds the link reads the address's mail: signing up with it needs no other
        # verification.
        get_adapter().stash_verified_email(request, found.email)
        ctx["has_account"] = User.objects.filter(email__iexact=found.email).exists()
        return render(request, "databases/invitation.html", ctx)
    try:
        if request.method == "POST":
            members.accept(found, request.user)  # type: ignore[arg-type]
            messages.success(request, f"You are now a user of “{found.database.name}”.")
            return redirect("databases")
        members.check(found, request.user)  # type: ignore[arg-type]
    except (ValidationError, EngineError) as error:
        ctx["error"] = _sentence(error)
    return render(request, "databases/invitation.html", ctx)
