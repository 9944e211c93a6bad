"""The REST API under /api/v1/: every portal action, authenticated by an API key."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from uuid import UUID

from allauth.core.internal import ratelimit
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from ninja import File, Form, NinjaAPI, Schema, Status, UploadedFile
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from tenantry.accounts.models import ApiKey, User
from tenantry.backups import restore
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle, members
from tenantry.databases.access import get_backup, get_database, get_operation
from tenantry.databases.models import Activity, Database, Membership, normalize_name
from tenantry.engines.base import EngineError
from tenantry.operations.models import Operation

# The rate limit, in ACCOUNT_RATE_LIMITS, on wrong keys from one client address.
FAILED_KEYS = "api_key_failed"


class TooManyFailedKeys(Exception):
    """The client's address sent too many wrong keys lately: none of its keys is checked."""


def _consume_key_failure(request: HttpRequest, dry_run: bool = False) -> bool:
    # allauth's own helper, called as its email verification calls it: the public one in
    # allauth.core.ratelimit passes over GET requests, and most guesses can be GETs.
    usage = ratelimit.consume(
        request, app="allauth.account", action=FAILED_KEYS, dry_run=dry_run, limit_get=True
    )
    return usage is not None


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        # Failures count per client address, and a good key does not clear them: else a
        # guesser's own valid key would reset the count between guesses.
        if not _consume_key_failure(request, dry_run=True):
            raise TooManyFailedKeys()
        key = ApiKey.objects.authenticate(token)
        if key is None:
            _consume_key_failure(request)
            return None
        request.user = key.user
        return key


api = NinjaAPI(
    title="Tenantry API",
    version="1",
    description="Manage your Tenantry account and databases. Send `Authorization: Bearer tnt_…`.",
    auth=ApiKeyAuth(),
    urls_namespace="api",
)


class Error(Schema):
    """Every error's answer: a sentence saying what went wrong."""

    detail: str


def errors(*statuses: int) -> dict[int, type[Error]]:
    """An operation's error answers, for the OpenAPI description: `statuses`, and those of
    every operation (401 without a valid key, 429 after too many wrong keys from the address)."""
    return dict.fromkeys(sorted({401, 429, *statuses}), Error)


def error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


@csrf_exempt  # a POST to a path the API lacks is a 404, not a CSRF failure
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any path under /api/v1/ that the API does not have (Django's would be an HTML page)."""
    return error(request, f"There is no {request.path} in the API: see /api/v1/docs.", 404)


def json_not_allowed(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """`view`, answering a method its path does not take in JSON (ninja's 405 is plain text)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = error(request, f"{request.method} is not allowed here: use {allowed}.", 405)
            response["Allow"] = allowed
        return response

    return wrapper


@api.exception_handler(TooManyFailedKeys)
def too_many_failed_keys(request: HttpRequest, exc: TooManyFailedKeys) -> HttpResponse:
    # The longest window: by then the failures that closed it have all left it.
    rates = ratelimit.get_rates(app="allauth.account", action=FAILED_KEYS)
    seconds = math.ceil(max(rate.duration for rate in rates))
    response = error(
        request,
        f"Too many requests with a wrong API key came from your address. "
        f"Try again in {seconds} seconds.",
        429,
    )
    response["Retry-After"] = str(seconds)
    return response


# Django raises these while reading the body, lazily, inside the operation: without handlers
# they would reach Django's HTML 400 page.
@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error(
        request, f"The request body is over the limit of {limit} bytes (uploaded files aside).", 413
    )


@api.exception_handler(TooManyFieldsSent)
@api.exception_handler(TooManyFilesSent)
def too_many_parts(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, "The request has too many form fields or files.", 400)


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = error(
        request,
        "A valid API key is required: it is missing, wrong, revoked or expired, "
        "or developer mode is off.",
        401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for e in exc.errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "payload"))
        problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    return error(request, "Invalid request: " + "; ".join(problems) + ".", 422)


class MeOut(Schema):
    email: str
    name: str
    company: str
    phone: str
    country: str
    developer_mode: bool
    two_factor: bool
    date_joined: datetime

    @staticmethod
    def resolve_two_factor(user: User) -> bool:
        return user.has_2fa


@api.get("/me", response={200: MeOut} | errors(), summary="The account that owns the API key")
def me(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


# A refusal's code, from the verbs (see databases.lifecycle), and its status; any other is 400.
STATUSES = {"forbidden": 403, "busy": 409, "taken": 409, "exists": 409, "throttled": 429}


@api.exception_handler(DjangoValidationError)
def refused(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    code = getattr(exc, "code", None) or "invalid"
    response = error(request, " ".join(exc.messages), STATUSES.get(code, 400))
    if code == "throttled":  # a limit of the day: tomorrow
        response["Retry-After"] = str(seconds_to_midnight())
    return response


def seconds_to_midnight() -> int:
    now = timezone.now()
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return math.ceil((tomorrow - now).total_seconds())


@api.exception_handler(MultiPartParserError)
def unreadable_upload(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return error(request, f"The upload cannot be read: {exc}.", 400)


@api.exception_handler(EngineError)
def storage_failed(request: HttpRequest, exc: EngineError) -> HttpResponse:
    return error(request, str(exc), 503)


class DatabaseOut(Schema):
    name: str
    url: str
    uuid: UUID
    release: str
    engine: str
    role: str
    status: str
    is_test_copy: bool
    expires_at: datetime | None
    size_bytes: int
    created_at: datetime


class OperationOut(Schema):
    id: int
    kind: str
    database: str
    state: str
    progress: int
    step: str
    error: str
    target: str | None
    created_at: datetime
    finished_at: datetime | None

    @staticmethod
    def resolve_database(operation: Operation) -> str:
        return operation.database_name

    @staticmethod
    def resolve_target(operation: Operation) -> str | None:
        return operation.target.name if operation.target else None


class NameIn(Schema):
    name: str


class DuplicateIn(Schema):
    name: str
    for_testing: bool = True


def database_out(database: Database, role: str) -> DatabaseOut:
    return DatabaseOut(
        name=database.name or "",
        url=database.url,
        uuid=database.uuid,
        release=database.release,
        engine=database.engine,
        role=role,
        status=database.status_label,
        is_test_copy=database.is_test_copy,
        expires_at=database.expires_at,
        size_bytes=database.size_bytes,
        created_at=database.created_at,
    )


def admin_database(request: HttpRequest, name: str) -> Database:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    if role != Membership.Role.ADMIN:
        raise DjangoValidationError(
            "Only the database's administrators can do this.", code="forbidden"
        )
    return database


@api.get(
    "/databases",
    response={200: list[DatabaseOut]} | errors(),
    summary="The databases linked to the account",
)
def list_databases(request: HttpRequest) -> list[DatabaseOut]:
    memberships = Membership.objects.filter(
        user=request.user.pk, database__name__isnull=False
    ).select_related("database")
    return [database_out(m.database, m.role) for m in memberships.order_by("database__name")]


@api.post(
    "/databases",
    response={201: DatabaseOut} | errors(400, 409, 413, 422, 503),
    summary="Create a database",
)
def create_database(request: HttpRequest, payload: NameIn) -> Status:
    database = lifecycle.create(payload.name, by=request.user)  # type: ignore[arg-type]
    return Status(201, database_out(database, Membership.Role.ADMIN))


@api.get("/databases/{name}", response={200: DatabaseOut} | errors(404), summary="One database")
def read_database(request: HttpRequest, name: str) -> DatabaseOut:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    return database_out(database, role)


@api.patch(
    "/databases/{name}",
    response={200: DatabaseOut} | errors(400, 403, 404, 409, 413, 422),
    summary="Rename a database",
)
def rename_database(request: HttpRequest, name: str, payload: NameIn) -> DatabaseOut:
    database = admin_database(request, name)
    lifecycle.rename(database, payload.name, by=request.user)  # type: ignore[arg-type]
    return database_out(database, Membership.Role.ADMIN)


@api.delete(
    "/databases/{name}",
    response={202: OperationOut} | errors(400, 403, 404, 409),
    summary="Delete a database",
)
def delete_database(request: HttpRequest, name: str) -> Status:
    database = admin_database(request, name)
    return Status(202, lifecycle.start_delete(database, by=request.user))  # type: ignore[arg-type]


@api.post(
    "/databases/{name}/duplicate",
    response={202: OperationOut} | errors(400, 403, 404, 409, 413, 422),
    summary="Duplicate a database",
)
def duplicate_database(request: HttpRequest, name: str, payload: DuplicateIn) -> Status:
    database = admin_database(request, name)
    operation = lifecycle.start_duplicate(
        database,
        payload.name,
        for_testing=payload.for_testing,
        by=request.user,  # type: ignore[arg-type]
    )
    return Status(202, operation)


@api.get(
    "/operations/{operation_id}",
    response={200: OperationOut} | errors(404, 422),
    summary="A long action's progress",
)
def read_operation(request: HttpRequest, operation_id: int) -> Operation:
    return get_operation(request.user, operation_id)  # type: ignore[arg-type]


@api.get(
    "/databases/{name}/download",
    response={200: None} | errors(403, 404),
    summary="The database's backup ZIP, streamed",
)
def download_database(request: HttpRequest, name: str) -> StreamingHttpResponse:
    from tenantry.databases.views import backup_response

    return backup_response(admin_database(request, name), by=request.user)  # type: ignore[arg-type]


class BackupOut(Schema):
    id: int
    created_at: datetime
    kind: str
    release: str
    engine: str
    size: int


@api.get(
    "/databases/{name}/backups",
    response={200: list[BackupOut]} | errors(403, 404),
    summary="Stored backups",
)
def list_backups(request: HttpRequest, name: str) -> list[Backup]:
    database = admin_database(request, name)
    return list(database.backups.stored())  # type: ignore[attr-defined]


@api.get(
    "/databases/{name}/backups/{backup_id}/download",
    response={200: None, 302: None} | errors(403, 404, 422),  # 302: to S3, when it holds it
    summary="A stored backup's ZIP",
)
def download_backup(request: HttpRequest, name: str, backup_id: int) -> HttpResponseBase:
    database = admin_database(request, name)
    from tenantry.databases.views import stored_backup_response

    backup = get_backup(request.user, backup_id, database)  # type: ignore[arg-type]
    return stored_backup_response(database, backup, by=request.user)  # type: ignore[arg-type]


@api.post(
    "/databases/{name}/restore",
    response={202: OperationOut} | errors(400, 403, 404, 409, 413, 422),
    summary="Restore a backup into a new database, or over one",
    description=(
        "Send a backup ZIP as the multipart field `file`, or name a stored backup of a database "
        "you administer with `backup` (its id). If `{name}` is one of your databases, "
        "`replace=true` restores over it after an automatic backup; otherwise a new database "
        "named `{name}` is made. `as_copy` (default true) gives it a new identity (uuid); "
        "`neutralize` turns off its mail, payments, carriers and jobs."
    ),
)
def restore_database(
    request: HttpRequest,
    name: str,
    file: UploadedFile | None = File(None),  # noqa: B008
    backup: int | None = Form(None),  # noqa: B008
    replace: bool = Form(False),  # noqa: B008
    as_copy: bool = Form(True),  # noqa: B008
    neutralize: bool = Form(False),  # noqa: B008
) -> Status:
    user: User = request.user  # type: ignore[assignment]
    existing = Membership.objects.filter(user=user, database__name=name).first()
    target: Database | str = normalize_name(name)
    if existing is not None:
        target = admin_database(request, name)
        if not replace:
            raise DjangoValidationError(
                f"“{name}” exists. Send replace=true to restore over it (it is backed up "
                "first), or choose the name of a new database.",
                code="exists",
            )
    if (file is None) == (backup is None):
        raise DjangoValidationError("Send either a backup ZIP as `file` or a stored `backup` id.")
    source = get_backup(user, backup) if backup is not None else restore.keep_upload(file, user)
    operation = restore.start(source, target, by=user, as_copy=as_copy, neutralize=neutralize)
    return Status(202, operation)


class ActivityOut(Schema):
    created_at: datetime
    actor: str
    kind: str
    detail: str
    channel: str
    ip: str | None
    result: str
    reason: str


class ActivityPage(Schema):
    count: int
    items: list[ActivityOut]


@api.get(
    "/databases/{name}/activity",
    response={200: ActivityPage} | errors(404, 422),
    summary="Who did what to a database, newest first",
    description="Administrators only. `kind` filters by action; `offset` and `limit` (at most "
    "200) page through the entries.",
)
def read_activity(
    request: HttpRequest, name: str, kind: str = "", offset: int = 0, limit: int = 50
) -> dict[str, Any]:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    if role != Membership.Role.ADMIN:
        raise Http404("No such database.")  # as to an outsider: it is not theirs to see
    if kind and kind not in Activity.Kind.values:
        raise DjangoValidationError(f"The kind is one of {', '.join(Activity.Kind.values)}.")
    entries = database.activity.all()  # type: ignore[attr-defined]
    if kind:
        entries = entries.filter(kind=kind)
    offset, limit = max(0, offset), min(max(1, limit), 200)
    return {"count": entries.count(), "items": list(entries[offset : offset + limit])}


class UserOut(Schema):
    email: str
    role: str
    status: str  # "member", or "invited" while the invitation is pending


class InviteIn(Schema):
    emails: list[str]
    role: str = Membership.Role.USER


@api.get(
    "/databases/{name}/users",
    response={200: list[UserOut]} | errors(403, 404),
    summary="Users and invitations",
)
def list_users(request: HttpRequest, name: str) -> list[dict[str, str]]:
    return members.listing(admin_database(request, name))


@api.post(
    "/databases/{name}/users",
    response={201: list[UserOut]} | errors(400, 403, 404, 413, 422),  # 429: the day's limit
    summary="Invite users by email",
)
def invite_users(request: HttpRequest, name: str, payload: InviteIn) -> Status:
    database = admin_database(request, name)
    emails = members.parse_emails(" ".join(payload.emails))
    sent = members.invite(database, emails, payload.role, by=request.user)  # type: ignore[arg-type]
    return Status(201, [UserOut(email=i.email, role=i.role, status="invited") for i in sent])


@api.delete(
    "/databases/{name}/users/{email}",
    response={204: None} | errors(400, 403, 404),
    summary="Remove a user or invitation",
)
def remove_user(request: HttpRequest, name: str, email: str) -> Status:
    members.remove_email(admin_database(request, name), email, by=request.user)  # type: ignore[arg-type]
    return Status(204, None)
