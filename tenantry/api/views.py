"""The REST API under /api/v1/: every portal action, authenticated by an API key.

Its conventions, for whoever writes a client (README, "The REST API"): errors are
`{"detail", "code"}` and declared on every operation; lists are pages `{"data", "has_more",
"next_cursor"}`; a long action answers 202 with the operation and its Location; a POST may
carry an Idempotency-Key (api.middleware), as may any request a request id.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from allauth.core.internal import ratelimit
from allauth.core.ratelimit import consume as consume_rate_limit
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.text import get_text_list
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Path, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer
from pydantic import ValidationError as PydanticError

from tenantry.accounts.models import ApiKey, User
from tenantry.api import schemas as s
from tenantry.backups import restore
from tenantry.billing import quotas, subscriptions
from tenantry.billing.models import Invoice, Plan, Subscription
from tenantry.databases import lifecycle, members
from tenantry.databases.access import get_backup, get_database, get_operation
from tenantry.databases.models import Database, Membership, normalize_name
from tenantry.domains import verbs as domains
from tenantry.domains.models import Domain
from tenantry.engines.base import EngineError
from tenantry.operations.models import Operation
from tenantry.releases import models as releases
from tenantry.releases import upgrade
from tenantry.support import verbs as support
from tenantry.support.models import Attachment, Ticket

# The rate limit, in ACCOUNT_RATE_LIMITS, on wrong keys from one client address.
FAILED_KEYS = "api_key_failed"
# Seconds a client should wait before polling an operation again, or retrying a busy database.
POLL_SECONDS = 2

TAGS = [
    {"name": "Account", "description": "The account that owns the API key."},
    {
        "name": "Databases",
        "description": "Create, list, rename, duplicate, upgrade and delete them.",
    },
    {"name": "Backups", "description": "Download, list and restore backups of a database."},
    {"name": "Users", "description": "Who may use a database: users and invitations."},
    {"name": "Activity", "description": "Who did what to a database."},
    {
        "name": "Domains",
        "description": "A database's custom domains: add, verify by DNS, list and remove them.",
    },
    {"name": "Operations", "description": "The progress of long actions."},
    {"name": "Releases", "description": "The workspace app's releases on offer."},
    {
        "name": "Subscriptions",
        "description": "What pays for databases: plans, users, invoices, renewal and "
        "cancellation; link and unlink databases.",
    },
    {
        "name": "Support",
        "description": "Questions to Tenantry's support team: open a request (about a database, "
        "whose details support gets, with files), follow its conversation, reply and close it.",
    },
]

DESCRIPTION = """Manage your Tenantry account and databases.

Send an API key as `Authorization: Bearer tnt_…` (keys are made on the Connection & security
page once developer mode is on). Errors are `{"detail": sentence, "code": machine_code}`.
Lists are pages: `{"data": [...], "has_more": bool, "next_cursor": str|null}`, with `limit` and
`cursor`. Long actions answer `202` with the operation and `Location: /api/v1/operations/{id}`;
poll it until its `state` is `done` or `failed`. Any POST may carry an `Idempotency-Key`: the
same key and body within 24 hours answer the first answer again and do nothing twice."""


class TooManyFailedKeys(Exception):
    """The client's address sent too many wrong keys lately: none of its keys is checked."""


def _consume_key_failure(request: HttpRequest) -> None:
    # allauth's own helper, called as its email verification calls it: the public one in
    # allauth.core.ratelimit passes over GET requests, and most guesses can be GETs.
    ratelimit.consume(request, app="allauth.account", action=FAILED_KEYS, limit_get=True)


def _too_many_key_failures(request: HttpRequest) -> bool:
    """Whether the client's address sent too many wrong keys lately: allauth's count, read
    without allauth's lock. Through consume(dry_run=True) every request of an address queued
    on one lock, and one that waited past a second for it was refused as locked out: a busy
    client's good key got 429s (bench/load.py)."""
    now = ratelimit.time.time()  # allauth's clock, as consume() reads it
    for rate in ratelimit.get_rates(app="allauth.account", action=FAILED_KEYS):
        key = ratelimit.get_cache_key(request, app="allauth.account", action=FAILED_KEYS, rate=rate)
        allowed, _ = ratelimit.apply_rate(list(cache.get(key, [])), now, rate, dry_run=True)
        if not allowed:
            return True
    return False


class ApiKeyAuth(HttpBearer):
    openapi_bearerFormat = "tnt_…"
    openapi_description = (
        "An API key of the account: `tnt_` and 40 characters, made on the Connection & "
        "security page (developer mode on) or with `tenantry apikeys create`."
    )

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        # Checked already, this request's own header, by the idempotency middleware.
        if isinstance(checked := getattr(request, "auth", None), ApiKey):
            request.user = checked.user
            return checked
        # Failures count per client address, and a good key does not clear them: else a
        # guesser's own valid key would reset the count between guesses.
        if _too_many_key_failures(request):
            raise TooManyFailedKeys()
        key = ApiKey.objects.authenticate(token)
        if key is None:
            _consume_key_failure(request)
            return None
        request.user = key.user
        return key


class TenantryAPI(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        # The restore's multipart body by name (ninja would name it after the function).
        restore_body = s.RestoreDatabaseRequest.model_json_schema()
        restore_body["properties"]["file"] = {
            "type": "string",
            "format": "binary",
            "description": "A backup ZIP (as the portal and the downloads make them).",
        }
        schema["components"]["schemas"]["RestoreDatabaseRequest"] = restore_body
        # The support requests' bodies, which no parameter declares (JSON or multipart).
        for body in (s.OpenSupportRequest, s.ReplySupportRequest):
            add_support_bodies(schema["components"]["schemas"], body)
        schema["servers"] = [{"url": settings.PORTAL_URL, "description": "This Tenantry."}]
        return schema


api = TenantryAPI(
    title="Tenantry API",
    version="1",
    description=DESCRIPTION,
    auth=ApiKeyAuth(),
    urls_namespace="api",
    openapi_extra={
        "info": {"contact": {"name": "Tenantry", "url": "https://github.com/tenantry/tenantry"}},
        "tags": TAGS,
    },
)

# Each status's code when the answer gives none of its own.
CODES = {
    400: s.ErrorCode.INVALID,
    401: s.ErrorCode.UNAUTHORIZED,
    403: s.ErrorCode.FORBIDDEN,
    404: s.ErrorCode.NOT_FOUND,
    405: s.ErrorCode.METHOD_NOT_ALLOWED,
    409: s.ErrorCode.BUSY,
    413: s.ErrorCode.TOO_LARGE,
    422: s.ErrorCode.INVALID_REQUEST,
    429: s.ErrorCode.RATE_LIMITED,
    503: s.ErrorCode.UNAVAILABLE,
}
# A refusal's code, from the verbs (see databases.lifecycle), and its status; any other is 400.
# 409: the request is right but the state of things refuses it until something else changes
# (another operation ends, a name is freed, a database is unlinked, a limit is made room under).
STATUSES = {
    "forbidden": 403,
    "busy": 409,
    "taken": 409,
    "exists": 409,
    "linked": 409,
    "limit": 409,
    "throttled": 429,
}


def errors(*statuses: int) -> dict[int, type[s.Error]]:
    """An operation's error answers, for the OpenAPI description: `statuses`, and those of
    every operation (401 without a valid key, 429 past a rate limit)."""
    return dict.fromkeys(sorted({401, 429, *statuses}), s.Error)


def error(request: HttpRequest, message: str, status: int, code: str = "") -> HttpResponse:
    body = {"detail": message, "code": code or CODES[status]}
    return api.create_response(request, body, status=status)


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


@api.exception_handler(HttpError)
def unreadable(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """ninja's own refusals (a body that is not JSON): the error's shape, with its code."""
    status = exc.status_code if exc.status_code in CODES else 400
    return error(request, f"{exc}.".replace("..", "."), status)


@api.exception_handler(Http404)
def missing(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error(request, str(exc) or "Not found.", 404)


@api.exception_handler(DjangoValidationError)
def refused(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    code = getattr(exc, "code", None) or "invalid"
    status = STATUSES.get(code, 400)
    response = error(request, " ".join(exc.messages), status, code)
    if code == "throttled":  # a limit of the day: tomorrow
        response["Retry-After"] = str(seconds_to_midnight())
    elif code == "busy":
        response["Retry-After"] = str(POLL_SECONDS)
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


# Pages: the cursor is the offset, opaque to clients so that it may become a key later.
LIMIT = Query(50, ge=1, le=200, description="How many at most (1 to 200).")
CURSOR = Query(None, description="The `next_cursor` of the previous page; none for the first page.")


def page(items: QuerySet[Any] | Sequence[Any], cursor: str | None, limit: int) -> dict[str, Any]:
    offset = _offset(cursor)
    chunk = list(items[offset : offset + limit + 1])
    more = len(chunk) > limit
    after = base64.urlsafe_b64encode(json.dumps({"o": offset + limit}).encode()).decode()
    return {"data": chunk[:limit], "has_more": more, "next_cursor": after if more else None}


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise DjangoValidationError("This cursor is not one the API gave.", code="invalid")
    return offset


def accepted(response: HttpResponse, operation: Operation) -> Status:
    """A long action's answer: 202 with the operation, where to poll it and when."""
    response["Location"] = operation_url(operation)
    response["Retry-After"] = str(POLL_SECONDS)
    return Status(202, operation_out(operation))


def operation_url(operation: Operation) -> str:
    return f"/api/v1/operations/{operation.pk}"


def operation_out(operation: Operation) -> dict[str, Any]:
    return {
        "id": operation.pk,
        "url": operation_url(operation),
        "kind": operation.kind,
        "database": operation.database_name,
        "state": operation.state,
        "progress": operation.progress,
        "step": operation.step,
        "error": operation.error,
        "target": operation.target.name if operation.target else None,
        "created_at": operation.created_at,
        "finished_at": operation.finished_at,
        "result": upgrade_report_out(operation),
    }


def upgrade_report_out(operation: Operation) -> dict[str, Any] | None:
    """An upgrade operation's report; None for the other kinds."""
    if operation.kind != "upgrade":
        return None
    report = releases.Upgrade.objects.select_related("copy").filter(operation=operation).first()
    if report is None:
        return None
    duration = report.duration
    return {
        "id": report.pk,
        "url": f"{settings.PORTAL_URL}/upgrades/{report.pk}/",
        "state": report.state,
        "test": report.test,
        "automatic": report.automatic,
        "from_release": report.from_release,
        "to_release": report.to_release,
        "steps": report.steps,
        "failed_step": report.failed_step,
        "error": report.error,
        "duration_seconds": duration.total_seconds() if duration is not None else None,
        "tables": [
            {"table": row["table"], "before": row.get("before"), "after": row.get("after")}
            for row in report.tables
        ],
        "test_copy": report.copy.name if report.copy else None,
    }


def database_out(
    database: Database, role: str, published: releases.Published | None = None
) -> dict[str, Any]:
    """`published`: the releases read once for a whole page of databases."""
    if database.status == Database.Status.ACTIVE and database.is_expired:
        status = s.DatabaseStatus.EXPIRED
    else:
        status = s.DatabaseStatus(database.status)
    published = published or releases.Published()
    upgrade_to, deadline = upgrade.offer(database, published)
    subscription = database.subscription
    usage, limit = quotas.usage(database)  # shared with its subscription's or project's
    return {
        "name": database.name or "",
        "url": database.url,
        "uuid": database.uuid,
        "release": database.release,
        "release_deprecated": database.release in published.deprecated,
        "upgrade_to": upgrade_to,
        "upgrade_deadline": deadline,
        "upgrade_failed": database.upgrade_failed_at is not None,
        "engine": database.engine,
        "role": role,
        "status": status,
        "status_label": database.status_label,
        "is_test_copy": database.is_test_copy,
        "expires_at": database.expires_at,
        "size_bytes": database.size_bytes,
        "created_at": database.created_at,
        "subscription": subscription.code if subscription else None,
        "trial_ends_at": database.expires_at if database.is_trial else None,
        "expired": database.is_expired,
        "usage_bytes": usage,
        "limit_bytes": limit,
    }


def admin_database(request: HttpRequest, name: str) -> Database:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    if role != Membership.Role.ADMIN:
        raise DjangoValidationError(
            "Only the database's administrators can do this.", code="forbidden"
        )
    return database


# Every POST may be retried safely with the same key (see api.middleware). A function: ninja
# extends the lists it is given.
def idempotent() -> dict[str, Any]:
    header = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Any unique string (a UUID): the same key and body within 24 hours "
        "answer the first answer again, and do nothing twice.",
        "schema": {"type": "string", "maxLength": 255},
    }
    return {"parameters": [header]}


NAME = Path(..., description="The database's name.")


@api.get(
    "/me",
    response={200: s.Me} | errors(),
    operation_id="getMe",
    tags=["Account"],
    summary="The account that owns the API key",
    description="Its profile, and whether it has two-factor authentication on.",
)
def me(request: HttpRequest) -> dict[str, Any]:
    user: User = request.user  # type: ignore[assignment]
    fields = ["email", "name", "company", "phone", "country", "developer_mode", "date_joined"]
    return {**{f: getattr(user, f) for f in fields}, "two_factor": user.has_2fa}


@api.get(
    "/databases",
    response={200: s.DatabaseList} | errors(400, 422),
    operation_id="listDatabases",
    tags=["Databases"],
    summary="The databases linked to the account",
    description="Every database the account is a user of, by name, a page at a time.",
)
def list_databases(
    request: HttpRequest, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    memberships = (
        Membership.objects.filter(user=request.user.pk, database__name__isnull=False)
        .select_related("database__subscription__plan")
        .order_by("database__name")
    )
    found = page(memberships, cursor, limit)
    published = releases.Published()
    data = [database_out(m.database, m.role, published) for m in found["data"]]
    return {**found, "data": data}


@api.post(
    "/databases",
    response={201: s.Database} | errors(400, 409, 413, 422, 503),
    operation_id="createDatabase",
    openapi_extra=idempotent(),
    tags=["Databases"],
    summary="Create a database",
    description="At the latest release, ready at once; the account is its administrator. "
    "A name already taken is a 409 with the code `taken`.",
)
def create_database(request: HttpRequest, payload: s.CreateDatabaseRequest) -> Status:
    database = lifecycle.create(payload.name, by=request.user)  # type: ignore[arg-type]
    return Status(201, database_out(database, Membership.Role.ADMIN))


@api.get(
    "/databases/{name}",
    response={200: s.Database} | errors(404),
    operation_id="getDatabase",
    tags=["Databases"],
    summary="One database",
    description="A database the account is a user of.",
)
def read_database(request: HttpRequest, name: str = NAME) -> dict[str, Any]:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    return database_out(database, role)


@api.patch(
    "/databases/{name}",
    response={200: s.Database} | errors(400, 403, 404, 409, 413, 422),
    operation_id="renameDatabase",
    tags=["Databases"],
    summary="Rename a database",
    description="Its address changes with its name; no data moves. Administrators only.",
)
def rename_database(
    request: HttpRequest, payload: s.RenameDatabaseRequest, name: str = NAME
) -> dict[str, Any]:
    database = admin_database(request, name)
    lifecycle.rename(database, payload.name, by=request.user)  # type: ignore[arg-type]
    return database_out(database, Membership.Role.ADMIN)


@api.delete(
    "/databases/{name}",
    response={202: s.Operation} | errors(400, 403, 404, 409),
    operation_id="deleteDatabase",
    tags=["Databases"],
    summary="Delete a database",
    description="Its name is free at once; the operation removes its data, files and "
    "backups. Administrators only.",
)
def delete_database(request: HttpRequest, response: HttpResponse, name: str = NAME) -> Status:
    database = admin_database(request, name)
    return accepted(response, lifecycle.start_delete(database, by=request.user))  # type: ignore[arg-type]


@api.post(
    "/databases/{name}/duplicate",
    response={202: s.Operation} | errors(400, 403, 404, 409, 413, 422),
    operation_id="duplicateDatabase",
    openapi_extra=idempotent(),
    tags=["Databases"],
    summary="Duplicate a database",
    description="An exact copy with its files, neutralized for testing unless `for_testing` "
    "is false; it expires after 15 days. Administrators only.",
)
def duplicate_database(
    request: HttpRequest,
    response: HttpResponse,
    payload: s.DuplicateDatabaseRequest,
    name: str = NAME,
) -> Status:
    database = admin_database(request, name)
    operation = lifecycle.start_duplicate(
        database, payload.name, for_testing=payload.for_testing, by=request.user,  # type: ignore[arg-type]
    )  # fmt: skip
    return accepted(response, operation)


@api.post(
    "/databases/{name}/upgrade",
    response={202: s.Operation} | errors(400, 403, 404, 409, 413, 422),
    operation_id="upgradeDatabase",
    openapi_extra=idempotent(),
    tags=["Databases"],
    summary="Upgrade a database to a newer release",
    description="To `release` (the latest published if none): a backup first, then every "
    "migration in one transaction, so a failure leaves the database as it was. With `test`, a "
    "neutralized test copy is made and upgraded instead (the operation's `target`). The "
    "operation's `result` is the report. A release unknown, unpublished, deprecated, or not "
    "above the database's is a 400 (`invalid`). Administrators only.",
)
def upgrade_database(
    request: HttpRequest,
    response: HttpResponse,
    payload: s.UpgradeDatabaseRequest,
    name: str = NAME,
) -> Status:
    database = admin_database(request, name)
    operation = upgrade.start(
        database, payload.release, test=payload.test, by=request.user,  # type: ignore[arg-type]
    )  # fmt: skip
    return accepted(response, operation)


@api.get(
    "/operations/{operation_id}",
    response={200: s.Operation} | errors(404, 422),
    operation_id="getOperation",
    tags=["Operations"],
    summary="A long action's progress",
    description="Poll it (every 2 seconds is plenty) until `state` is `done` or `failed`.",
)
def read_operation(
    request: HttpRequest,
    operation_id: int = Path(..., description="The operation's id."),  # noqa: B008
) -> dict[str, Any]:
    return operation_out(get_operation(request.user, operation_id))  # type: ignore[arg-type]


ZIP = {
    "description": "The backup ZIP: `manifest.json`, `dump.sql` and `filestore/`.",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {
        "Content-Disposition": {
            "description": "The file's name.",
            "schema": {"type": "string"},
        }
    },
}


@api.get(
    "/databases/{name}/download",
    response={200: None} | errors(403, 404),
    operation_id="downloadDatabase",
    tags=["Backups"],
    summary="The database's backup ZIP, streamed",
    description="Made as it is sent, from the database's current state: the first bytes leave "
    "at once whatever its size. Administrators only.",
    openapi_extra={"responses": {200: ZIP}},
)
def download_database(request: HttpRequest, name: str = NAME) -> StreamingHttpResponse:
    from tenantry.databases.views import backup_response

    return backup_response(admin_database(request, name), by=request.user)  # type: ignore[arg-type]


@api.get(
    "/databases/{name}/backups",
    response={200: s.BackupList} | errors(400, 403, 404, 422),
    operation_id="listBackups",
    tags=["Backups"],
    summary="Stored backups",
    description="The database's stored backups, newest first: daily ones (7 daily, 4 weekly, "
    "3 monthly kept) and those made before a restore or an upgrade. Administrators only.",
)
def list_backups(
    request: HttpRequest, name: str = NAME, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    database = admin_database(request, name)
    return page(database.backups.stored(), cursor, limit)  # type: ignore[attr-defined]


@api.get(
    "/databases/{name}/backups/{backup_id}/download",
    response={200: None, 302: None} | errors(403, 404, 422),
    operation_id="downloadBackup",
    tags=["Backups"],
    summary="A stored backup's ZIP",
    description="From a folder, the ZIP itself; from S3, a redirect to a link valid for 5 "
    "minutes. Administrators only.",
    openapi_extra={
        "responses": {
            200: ZIP,
            302: {
                "description": "The backup is in S3: follow the link (valid 5 minutes).",
                "headers": {
                    "Location": {
                        "description": "A presigned link to the ZIP.",
                        "schema": {"type": "string", "format": "uri"},
                    }
                },
            },
        }
    },
)
def download_backup(
    request: HttpRequest,
    name: str = NAME,
    backup_id: int = Path(..., description="The backup's id."),  # noqa: B008
) -> HttpResponseBase:
    from tenantry.databases.views import stored_backup_response

    database = admin_database(request, name)
    backup = get_backup(request.user, backup_id, database)  # type: ignore[arg-type]
    return stored_backup_response(database, backup, by=request.user)  # type: ignore[arg-type]


@api.post(
    "/databases/{name}/restore",
    response={202: s.Operation} | errors(400, 403, 404, 409, 413, 422),
    operation_id="restoreDatabase",
    tags=["Backups"],
    summary="Restore a backup into a new database, or over one",
    description=(
        "Send a backup ZIP as the multipart field `file`, or name a stored backup of a database "
        "you administer with `backup` (its id). If `{name}` is one of your databases, "
        "`replace=true` restores over it after an automatic backup; otherwise a new database "
        "named `{name}` is made. `as_copy` (default true) gives it a new identity (uuid); "
        "`neutralize` turns off its mail, payments, carriers and jobs."
    ),
    openapi_extra={
        **idempotent(),
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"$ref": "#/components/schemas/RestoreDatabaseRequest"}
                }
            },
        },
    },
)
def restore_database(request: HttpRequest, response: HttpResponse, name: str = NAME) -> Status:
    user: User = request.user  # type: ignore[assignment]
    try:
        form = s.RestoreDatabaseRequest.model_validate(
            {k: v for k, v in request.POST.items() if k != "file"}
        )
    except PydanticError as problem:
        raise ValidationError(problem.errors()) from None  # type: ignore[arg-type]
    file = request.FILES.get("file")
    existing = Membership.objects.filter(user=user, database__name=name).first()
    target: Database | str = normalize_name(name)
    if existing is not None:
        target = admin_database(request, name)
        if not form.replace:
            raise DjangoValidationError(
                f"“{name}” exists. Send replace=true to restore over it (it is backed up "
                "first), or choose the name of a new database.",
                code="exists",
            )
    if (file is None) == (form.backup is None):
        raise DjangoValidationError("Send either a backup ZIP as `file` or a stored `backup` id.")
    if form.backup is not None:
        source = get_backup(user, form.backup)
    else:
        source = restore.keep_upload(file, user)
    operation = restore.start(
        source, target, by=user, as_copy=form.as_copy, neutralize=form.neutralize
    )
    return accepted(response, operation)


@api.get(
    "/databases/{name}/activity",
    response={200: s.ActivityList} | errors(400, 404, 422),
    operation_id="listActivity",
    tags=["Activity"],
    summary="Who did what to a database",
    description="Its activity log, newest first: every action, its actor, channel, address "
    "and result. Administrators only (others get 404).",
)
def read_activity(
    request: HttpRequest,
    name: str = NAME,
    kind: s.ActivityKind | None = Query(None, description="Only this kind of action."),  # noqa: B008
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> dict[str, Any]:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    if role != Membership.Role.ADMIN:
        raise Http404(f"No database “{name}”.")  # as to an outsider: it is not theirs to see
    entries = database.activity.all()  # type: ignore[attr-defined]
    if kind:
        entries = entries.filter(kind=kind)
    return page(entries, cursor, limit)


@api.get(
    "/databases/{name}/users",
    response={200: s.UserList} | errors(400, 403, 404, 422),
    operation_id="listUsers",
    tags=["Users"],
    summary="Users and invitations",
    description="The database's users by email, then its pending invitations. Administrators only.",
)
def list_users(
    request: HttpRequest, name: str = NAME, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    return page(members.listing(admin_database(request, name)), cursor, limit)


@api.post(
    "/databases/{name}/users",
    response={201: list[s.User]} | errors(400, 403, 404, 409, 413, 422),
    operation_id="inviteUsers",
    openapi_extra=idempotent(),
    tags=["Users"],
    summary="Invite users by email",
    description="Each address gets a mail with a link that works once, for 7 days (a pending "
    "invitation gets a new one). 50 addresses at most; an account sends 200 invitations a day "
    "at most (429 until midnight UTC beyond). Administrators only.",
)
def invite_users(request: HttpRequest, payload: s.InviteUsersRequest, name: str = NAME) -> Status:
    database = admin_database(request, name)
    emails = members.parse_emails(" ".join(payload.emails))
    sent = members.invite(database, emails, payload.role, by=request.user)  # type: ignore[arg-type]
    return Status(201, [{"email": i.email, "role": i.role, "status": "invited"} for i in sent])


@api.delete(
    "/databases/{name}/users/{email}",
    response={204: None} | errors(400, 403, 404),
    operation_id="removeUser",
    tags=["Users"],
    summary="Remove a user or invitation",
    description="The user's access ends at once (their sessions in the database too); a "
    "database keeps at least one administrator. Administrators only.",
)
def remove_user(
    request: HttpRequest,
    name: str = NAME,
    email: str = Path(..., description="The user's or invited address."),  # noqa: B008
) -> Status:
    members.remove_email(admin_database(request, name), email, by=request.user)  # type: ignore[arg-type]
    return Status(204, None)


# Domains

DOMAIN = Path(..., description="One of the database's domains, in Unicode or ASCII.")


def get_domain(database: Database, typed: str) -> Domain:
    """One of the database's domains, by its Unicode or ASCII name, or 404."""
    name = typed.strip().rstrip(".").lower()
    with contextlib.suppress(UnicodeError):  # not a name: found as no domain is
        name = name.encode("idna").decode()
    found = database.domains.filter(name=name).first()  # type: ignore[attr-defined]
    if found is None:
        raise Http404(f"“{typed}” is not a domain of “{database.name}”.")
    return found  # type: ignore[no-any-return]


def domain_out(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.display,
        "ascii_name": domain.name,
        "state": domain.state,
        "reason": domain.reason,
        "primary": domain.primary,
        "records": {
            "cname": {"name": f"{domain.name}.", "value": f"{domains.target(domain.database)}."},
            "txt": {"name": f"{domains.CHALLENGE}.{domain.name}.", "value": domain.token},
        },
        "created_at": domain.created_at,
        "verified_at": domain.verified_at,
        "checked_at": domain.checked_at,
    }


@api.get(
    "/databases/{name}/domains",
    response={200: s.DomainList} | errors(400, 403, 404, 422),
    operation_id="listDomains",
    tags=["Domains"],
    summary="Custom domains",
    description="The database's custom domains, by ASCII name: each with its state and the DNS "
    "records that verify it. Administrators only.",
)
def list_domains(
    request: HttpRequest, name: str = NAME, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    database = admin_database(request, name)
    found = page(database.domains.order_by("name"), cursor, limit)  # type: ignore[attr-defined]
    return {**found, "data": [domain_out(d) for d in found["data"]]}


@api.post(
    "/databases/{name}/domains",
    response={201: s.Domain} | errors(400, 403, 404, 409, 413, 422),
    operation_id="addDomain",
    openapi_extra=idempotent(),
    tags=["Domains"],
    summary="Add a custom domain",
    description="Pending until DNS points it at the database: add either of the answer's "
    "`records`, then verify it (Tenantry also checks pending domains for 7 days). Refused with "
    "a 400 (`invalid`): a name under Tenantry's own domain, an IP address, a wildcard, a name "
    "that breaks the hostname rules; with a 409: a domain a database has verified, or this "
    "one has already (`taken`; another database's pending one takes nothing), more "
    "than the domains a database may have (`limit`). Administrators only.",
)
def add_domain(request: HttpRequest, payload: s.AddDomainRequest, name: str = NAME) -> Status:
    database = admin_database(request, name)
    domain = domains.add(database, payload.domain, by=request.user)  # type: ignore[arg-type]
    return Status(201, domain_out(domain))


@api.delete(
    "/databases/{name}/domains/{domain}",
    response={204: None} | errors(403, 404),
    operation_id="removeDomain",
    tags=["Domains"],
    summary="Remove a custom domain",
    description="It is no longer served at once; if it was the primary domain, the database's "
    "other addresses stop redirecting to it. Administrators only.",
)
def remove_domain(request: HttpRequest, name: str = NAME, domain: str = DOMAIN) -> Status:
    found = get_domain(admin_database(request, name), domain)
    domains.remove(found, by=request.user)  # type: ignore[arg-type]
    return Status(204, None)


@api.post(
    "/databases/{name}/domains/{domain}/verify",
    response={200: s.Domain} | errors(403, 404),
    operation_id="verifyDomain",
    openapi_extra=idempotent(),
    tags=["Domains"],
    summary="Check a custom domain's DNS records now",
    description="The domain after the check: verified when its CNAME or TXT record is found, "
    'else still pending with the `reason` ("no CNAME record", "the name does not exist"...). '
    "Administrators only.",
)
def verify_domain(request: HttpRequest, name: str = NAME, domain: str = DOMAIN) -> dict[str, Any]:
    found = get_domain(admin_database(request, name), domain)
    return domain_out(domains.verify(found, by=request.user))  # type: ignore[arg-type]


@api.get(
    "/releases",
    response={200: s.ReleaseList} | errors(400, 422),
    operation_id="listReleases",
    tags=["Releases"],
    summary="The releases on offer",
    description="The published releases of the workspace app, oldest first; new databases are "
    "made at the latest.",
)
def list_releases(
    request: HttpRequest, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    published = sorted(releases.Release.objects.published(), key=lambda r: r.version_key)
    latest = releases.latest()
    rows = [
        {
            "version": r.version,
            "published_at": r.published_at,
            "deprecated": r.deprecated,
            "latest": r.version == latest,
        }
        for r in published
    ]
    return page(rows, cursor, limit)


# Subscriptions

CODE = Path(..., description="The subscription's code.")


def subscriptions_of(user: Any) -> QuerySet[Subscription]:
    """The account's subscriptions, with their plans and the databases they pay for."""
    linked = Prefetch("databases", queryset=Database.objects.exclude(name=None))
    return (
        Subscription.objects.filter(owner=user.pk).select_related("plan").prefetch_related(linked)
    )


def get_subscription(request: HttpRequest, code: str) -> Subscription:
    """A subscription of the key's account, or 404: another account's is not there to see."""
    found = subscriptions_of(request.user).filter(code=code.upper()).first()
    if found is None:
        raise Http404(f"No subscription “{code}”.")
    return found


def plan_named(name: str) -> Plan:
    plan = Plan.objects.filter(name=name).first()
    if plan is None:
        names = [f"“{n}”" for n in Plan.objects.values_list("name", flat=True)]
        raise DjangoValidationError(
            f"There is no plan “{name}”. The plans are {get_text_list(names, 'and')}.",
            code="invalid",
        )
    return plan


def money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def subscription_out(subscription: Subscription) -> dict[str, Any]:
    plan = subscription.plan
    return {
        "code": subscription.code,
        "plan": {
            "name": plan.name,
            "price_month": money(plan.price_month),
            "price_year": money(plan.price_year),
            "storage_bytes": plan.storage_bytes,
            "max_databases": plan.max_databases,
            "grows": plan.grows,
        },
        "period": subscription.period,
        "users": subscription.users,
        "state": subscription.state,
        "renews_at": subscription.renews_at,
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "created_at": subscription.created_at,
        "databases": [d.name for d in subscription.databases.all()],  # type: ignore[attr-defined]
    }


def invoice_out(invoice: Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "issued_at": invoice.issued_at,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "plan": invoice.plan_name,
        "users": invoice.users,
        "amount": money(invoice.amount),
        "paid": invoice.paid_at is not None,
    }


def subscription_details(request: HttpRequest, code: str) -> dict[str, Any]:
    """The subscription as it is now (read again after a verb changed it), with its invoices."""
    subscription = get_subscription(request, code)
    return {
        **subscription_out(subscription),
        "users_taken": len(subscriptions.users_taken(subscription)),
        "invoices": [invoice_out(i) for i in subscription.invoices.all()],  # type: ignore[attr-defined]
    }


@api.get(
    "/subscriptions",
    response={200: s.SubscriptionList} | errors(400, 422),
    operation_id="listSubscriptions",
    tags=["Subscriptions"],
    summary="The account's subscriptions",
    description="Every subscription the account holds, by code, a page at a time: its plan, "
    "state, renewal and the databases it pays for (its invoices are in its details).",
)
def list_subscriptions(
    request: HttpRequest, limit: int = LIMIT, cursor: str | None = CURSOR
) -> dict[str, Any]:
    found = page(subscriptions_of(request.user), cursor, limit)
    return {**found, "data": [subscription_out(x) for x in found["data"]]}


@api.get(
    "/subscriptions/{code}",
    response={200: s.SubscriptionDetails} | errors(404),
    operation_id="getSubscription",
    tags=["Subscriptions"],
    summary="One subscription, with its invoices",
    description="A subscription the account holds (another account's is a 404).",
)
def read_subscription(request: HttpRequest, code: str = CODE) -> dict[str, Any]:
    return subscription_details(request, code)


@api.patch(
    "/subscriptions/{code}",
    response={200: s.SubscriptionDetails} | errors(400, 403, 404, 409, 413, 422),
    operation_id="changeSubscription",
    tags=["Subscriptions"],
    summary="Change a subscription's users or plan",
    description="At once; the next invoice shows it. A plan that takes fewer databases than "
    "are linked is a 409 (`limit`); fewer than one user, an unknown plan, or a subscription "
    "that has ended, a 400 (`invalid`).",
)
def change_subscription(
    request: HttpRequest, payload: s.ChangeSubscriptionRequest, code: str = CODE
) -> dict[str, Any]:
    subscription = get_subscription(request, code)
    plan = plan_named(payload.plan) if payload.plan is not None else None
    subscriptions.change(subscription, users=payload.users, plan=plan, by=request.user)  # type: ignore[arg-type]
    return subscription_details(request, code)


@api.post(
    "/subscriptions/{code}/cancel",
    response={200: s.SubscriptionDetails} | errors(400, 404),
    operation_id="cancelSubscription",
    openapi_extra=idempotent(),
    tags=["Subscriptions"],
    summary="Cancel a subscription at the end of its period",
    description="It goes on until `renews_at`, then ends instead of renewing, and the "
    "databases it pays for expire unless another subscription takes them. Renewing takes the "
    "cancellation back. One cancelled already or ended is a 400 (`invalid`).",
)
def cancel_subscription(request: HttpRequest, code: str = CODE) -> dict[str, Any]:
    subscriptions.cancel(get_subscription(request, code), by=request.user)  # type: ignore[arg-type]
    return subscription_details(request, code)


@api.post(
    "/subscriptions/{code}/renew",
    response={200: s.SubscriptionDetails} | errors(400, 404),
    operation_id="renewSubscription",
    openapi_extra=idempotent(),
    tags=["Subscriptions"],
    summary="Renew a subscription now",
    description="The next period is invoiced at once, at today's plan and users, and a "
    "cancellation is taken back. Send an Idempotency-Key: a retry without one invoices another "
    "period. An expired subscription is a 400 (`invalid`): its invoices are to be paid first.",
)
def renew_subscription(request: HttpRequest, code: str = CODE) -> dict[str, Any]:
    subscriptions.renew(get_subscription(request, code), by=request.user)  # type: ignore[arg-type]
    return subscription_details(request, code)


@api.post(
    "/subscriptions/{code}/databases",
    response={201: s.Database} | errors(400, 403, 404, 409, 413, 422),
    operation_id="linkDatabase",
    openapi_extra=idempotent(),
    tags=["Subscriptions"],
    summary="Link a database to a subscription",
    description="The subscription pays for the database from now on: its trial ends, and an "
    "expired database is live again at once. Administrators of the database only. One linked "
    "to another live subscription is a 409 (`linked`), one past the plan's number of databases "
    "a 409 (`limit`); a copy, one linked already, or a subscription that has ended, a 400 "
    "(`invalid`).",
)
def link_database(request: HttpRequest, payload: s.LinkDatabaseRequest, code: str = CODE) -> Status:
    subscription = get_subscription(request, code)
    database, role = get_database(request.user, normalize_name(payload.name))  # type: ignore[arg-type]
    subscriptions.link(subscription, database, by=request.user)  # type: ignore[arg-type]
    return Status(201, database_out(database, role))


@api.delete(
    "/subscriptions/{code}/databases/{name}",
    response={204: None} | errors(400, 403, 404),
    operation_id="unlinkDatabase",
    tags=["Subscriptions"],
    summary="Unlink a database from a subscription",
    description="The subscription no longer pays for it: what is left of its trial goes on, "
    "else it expires at once (then it can only be downloaded or backed up). Administrators of "
    "the database only.",
)
def unlink_database(request: HttpRequest, code: str = CODE, name: str = NAME) -> Status:
    subscription = get_subscription(request, code)
    # The subscription's owner sees the names of the databases it pays for (an administrator
    # of theirs may unlink them); any other is looked up as the account's own.
    database = next((d for d in subscription.databases.all() if d.name == name), None)  # type: ignore[attr-defined]
    if database is None:
        database, _ = get_database(request.user, name)  # type: ignore[arg-type]
    subscriptions.unlink(subscription, database, by=request.user)  # type: ignore[arg-type]
    return Status(204, None)


# Support

SUPPORT_ID = Path(..., description="The support request's id (its number without the #).")
# The multipart field of a request's or a reply's files, as the portal's forms name it.
ATTACHMENTS = "attachments"
# The rate limit, in ACCOUNT_RATE_LIMITS, on the requests and replies of one account (each
# mails the support team); the portal's count too.
SUPPORT_RATE = "support"


def add_support_bodies(components: dict[str, Any], body: type[Schema]) -> None:
    """`body`'s schema (the JSON body) and `<body>Form` (the multipart form: the same fields
    and the files)."""
    found = body.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, component in found.pop("$defs", {}).items():
        components.setdefault(name, component)
    components[body.__name__] = found
    form = json.loads(json.dumps(found))
    form["title"] = f"{body.__name__}Form"
    form["description"] = f"{body.__name__} as a multipart form, with its files."
    for spec in form["properties"].values():
        # A form has no null: a field left out or empty is none (a generated client would
        # send a nullable one's None as the text "None").
        if "anyOf" in spec:
            spec.update(next(a for a in spec.pop("anyOf") if a != {"type": "null"}))
            spec.pop("default", None)
    form["properties"][ATTACHMENTS] = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "maxItems": support.MAX_FILES,
        "description": f"Up to {support.MAX_FILES} files (screenshots, logs) of "
        f"{support.MAX_FILE_BYTES // 1024 // 1024} MB each, none empty.",
    }
    components[f"{body.__name__}Form"] = form


def json_or_form(body: type[Schema]) -> dict[str, Any]:
    """An operation's body: JSON, or a multipart form that may carry files (add_support_bodies
    puts both schemas in the document)."""
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}},
            "multipart/form-data": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}Form"}
            },
        },
    }


def support_form[T: Schema](request: HttpRequest, body: type[T]) -> tuple[T, list[Any]]:
    """The fields and files of a request or a reply: a multipart form (its files in
    `attachments`), or a JSON body (no files). Read here, not by ninja, which takes one or
    the other."""
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data: Any = request.POST.dict()
        # A file under another name would be lost without a word.
        others = sorted(set(request.FILES) - {ATTACHMENTS})
        if others:
            named = get_text_list([f"`{name}`" for name in others], "and")
            raise DjangoValidationError(f"Send the files as `{ATTACHMENTS}`, not as {named}.")
        files = request.FILES.getlist(ATTACHMENTS)
    else:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise DjangoValidationError(
                "The body is neither JSON nor a multipart form.", code="invalid"
            ) from None
        files = []
    try:
        return body.model_validate(data), files
    except PydanticError as problem:
        raise ValidationError(problem.errors()) from None  # type: ignore[arg-type]


class TooManySupportMessages(Exception):
    """The account sent as many support requests and replies as it may for now."""


def refuse_past_support_rate(request: HttpRequest) -> None:
    """Before the verb; it counts once sent (count_support_message): a refusal spends none."""
    if not consume_rate_limit(request, action=SUPPORT_RATE, user=request.user, dry_run=True):
        raise TooManySupportMessages()


def count_support_message(request: HttpRequest) -> None:
    consume_rate_limit(request, action=SUPPORT_RATE, user=request.user)


def span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "an hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "a minute" if seconds == 60 else f"{seconds // 60} minutes"
    return f"{seconds} seconds"


@api.exception_handler(TooManySupportMessages)
def too_many_support_messages(request: HttpRequest, exc: TooManySupportMessages) -> HttpResponse:
    # The longest window: by then the messages that closed it have all left it.
    rates = ratelimit.get_rates(app="allauth.account", action=SUPPORT_RATE)
    rate = max(rates, key=lambda r: r.duration)
    seconds = math.ceil(rate.duration)
    response = error(
        request,
        f"This account has sent too many support requests and replies lately ({rate.amount} "
        f"in {span(seconds)} at most). Try again in {span(seconds)}.",
        429,
    )
    response["Retry-After"] = str(seconds)
    return response


def support_request_out(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.pk,
        "number": ticket.number,
        "url": f"{settings.PORTAL_URL}/support/{ticket.pk}/",
        "subject": ticket.subject,
        "category": ticket.category,
        "state": ticket.state,
        "database": ticket.details.get("name") or None,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
    }


def attachment_url(ticket: Ticket, attachment: Attachment) -> str:
    return f"/api/v1/support/{ticket.pk}/files/{attachment.pk}"


def support_request_details(ticket: Ticket) -> dict[str, Any]:
    """The request with its database's details (as saved when it was asked) and messages."""
    messages = ticket.messages.prefetch_related("attachments")  # type: ignore[attr-defined]
    found = ticket.details
    return {
        **support_request_out(ticket),
        "details": {key: str(found.get(key) or "") for key, _ in support.DETAILS}
        if found
        else None,
        "messages": [
            {
                "id": message.pk,
                "author": s.SupportAuthor.SUPPORT if message.by_staff else s.SupportAuthor.YOU,
                "body": message.body,
                "created_at": message.created_at,
                "attachments": [
                    {
                        "id": a.pk,
                        "name": a.name,
                        "size": a.size,
                        "url": attachment_url(ticket, a),
                    }
                    for a in message.attachments.all()
                ],
            }
            for message in messages
        ],
    }


SUPPORT_BODY = (
    "Send JSON, or a multipart form with up to 5 files of 10 MB each in `attachments` "
    "(repeat the field for each file). "
)
SUPPORT_LIMIT = (
    "An account sends 30 requests and replies an hour at most (429 beyond: each one mails the "
    "support team)."
)


@api.post(
    "/support",
    response={201: s.SupportRequestDetails} | errors(400, 404, 413, 422),
    operation_id="openSupportRequest",
    openapi_extra={**idempotent(), "requestBody": json_or_form(s.OpenSupportRequest)},
    tags=["Support"],
    summary="Open a support request",
    description=SUPPORT_BODY
    + "With `database` (one of yours), support gets its details as its record has them now: "
    "name, identity, address, release, engine, size, state and subscription. Refused with a "
    "400 (`invalid`): an empty subject or description, more than 5 files, an empty file, one "
    "over 10 MB. A database that is not one of yours is a 404. " + SUPPORT_LIMIT,
)
def open_support_request(request: HttpRequest) -> Status:
    user: User = request.user  # type: ignore[assignment]
    form, files = support_form(request, s.OpenSupportRequest)
    database = None
    if form.database and form.database.strip():
        database, _ = get_database(user, normalize_name(form.database))
    refuse_past_support_rate(request)
    ticket = support.open_request(
        user,
        subject=form.subject,
        body=form.description,
        category=form.category.value,
        database=database,
        files=files,
    )
    count_support_message(request)
    return Status(201, support_request_details(ticket))


@api.get(
    "/support",
    response={200: s.SupportRequestList} | errors(400, 422),
    operation_id="listSupportRequests",
    tags=["Support"],
    summary="The account's support requests",
    description="The last updated first, a page at a time (their messages are in their details).",
)
def list_support_requests(
    request: HttpRequest,
    state: s.SupportState | None = Query(None, description="Only the requests in this state."),  # noqa: B008
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
) -> dict[str, Any]:
    found = support.requests_of(request.user).order_by("-updated_at", "-id")  # type: ignore[arg-type]
    if state:
        found = found.filter(state=state)
    answer = page(found, cursor, limit)
    return {**answer, "data": [support_request_out(t) for t in answer["data"]]}


@api.get(
    "/support/{support_id}",
    response={200: s.SupportRequestDetails} | errors(404, 422),
    operation_id="getSupportRequest",
    tags=["Support"],
    summary="One support request, with its messages",
    description="A request of the account (another account's is a 404): its database's "
    "details as they were when it was asked, and the conversation with its files' links.",
)
def read_support_request(request: HttpRequest, support_id: int = SUPPORT_ID) -> dict[str, Any]:
    return support_request_details(support.get_ticket(request.user, support_id))  # type: ignore[arg-type]


@api.post(
    "/support/{support_id}/reply",
    response={201: s.SupportRequestDetails} | errors(400, 404, 413, 422),
    operation_id="replySupportRequest",
    openapi_extra={**idempotent(), "requestBody": json_or_form(s.ReplySupportRequest)},
    tags=["Support"],
    summary="Reply to a support request",
    description=SUPPORT_BODY
    + "The request is `open` again (waiting for support), a closed one too; the answer is the "
    "request with the reply last. Refused with a 400 (`invalid`): an empty body, more than 5 "
    "files, an empty file, one over 10 MB. " + SUPPORT_LIMIT,
)
def reply_support_request(request: HttpRequest, support_id: int = SUPPORT_ID) -> Status:
    user: User = request.user  # type: ignore[assignment]
    ticket = support.get_ticket(user, support_id)
    form, files = support_form(request, s.ReplySupportRequest)
    refuse_past_support_rate(request)
    support.reply(ticket, user, form.body, files)
    count_support_message(request)
    return Status(201, support_request_details(ticket))


@api.post(
    "/support/{support_id}/close",
    response={200: s.SupportRequestDetails} | errors(400, 404, 422),
    operation_id="closeSupportRequest",
    openapi_extra=idempotent(),
    tags=["Support"],
    summary="Close a support request",
    description="When the question is settled; a reply opens it again. One closed already is a "
    "400 (`invalid`).",
)
def close_support_request(request: HttpRequest, support_id: int = SUPPORT_ID) -> dict[str, Any]:
    ticket = support.get_ticket(request.user, support_id)  # type: ignore[arg-type]
    support.close(ticket)
    return support_request_details(ticket)


ATTACHMENT = {
    "description": "The file, as it was sent.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "headers": {
        "Content-Disposition": {
            "description": "`attachment` and the file's name, without any folder.",
            "schema": {"type": "string"},
        }
    },
}


@api.get(
    "/support/{support_id}/files/{attachment_id}",
    response={200: None} | errors(404, 422),
    operation_id="downloadSupportAttachment",
    tags=["Support"],
    summary="A file of a support request",
    description="A file attached to one of the request's messages, yours or support's (another "
    "account's request is a 404). Its `url` in the request's messages leads here.",
    openapi_extra={"responses": {200: ATTACHMENT}},
)
def download_support_attachment(
    request: HttpRequest,
    support_id: int = SUPPORT_ID,
    attachment_id: int = Path(..., description="The file's id."),  # noqa: B008
) -> FileResponse:
    ticket = support.get_ticket(request.user, support_id)  # type: ignore[arg-type]
    attachment = Attachment.objects.filter(message__ticket=ticket, pk=attachment_id).first()
    if attachment is None:
        raise Http404(f"No file {attachment_id} in the support request {ticket.number}.")
    try:
        stored = attachment.file.open("rb")
    except FileNotFoundError:
        raise Http404(f"The file “{attachment.name}” is no longer stored.") from None
    # Never shown inline: a customer's file is not a page of this site.
    return FileResponse(
        stored,
        as_attachment=True,
        filename=attachment.name,
        content_type="application/octet-stream",
    )
