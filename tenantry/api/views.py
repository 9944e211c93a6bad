"""The REST API under /api/v1/: every portal action, authenticated by an API key."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from ninja import File, Form, NinjaAPI, Schema, Status, UploadedFile
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from tenantry.accounts.models import ApiKey, User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle, members
from tenantry.databases.access import get_backup, get_database, get_operation
from tenantry.databases.models import Database, Membership
from tenantry.engines.base import EngineError
from tenantry.operations.models import Operation, OperationBusy


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.objects.authenticate(token)
        if key is not None:
            request.user = key.user
        return key


api = NinjaAPI(
    title="Tenantry API",
    version="1",
    description="Manage your Tenantry account and databases. Send `Authorization: Bearer tnt_…`.",
    auth=ApiKeyAuth(),
    urls_namespace="api",
)


def error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": message}, status=status)


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


@api.get("/me", response=MeOut, summary="The account that owns the API key")
def me(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


@api.exception_handler(DjangoValidationError)
def refused(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    return error(request, " ".join(exc.messages), 400)


@api.exception_handler(MultiPartParserError)
def unreadable_upload(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return error(request, f"The upload cannot be read: {exc}.", 400)


@api.exception_handler(OperationBusy)
def busy(request: HttpRequest, exc: OperationBusy) -> HttpResponse:
    return error(request, str(exc), 409)


@api.exception_handler(IntegrityError)
def taken(request: HttpRequest, exc: IntegrityError) -> HttpResponse:
    return error(request, "That name was just taken. Choose another one.", 409)


@api.exception_handler(EngineError)
def storage_failed(request: HttpRequest, exc: EngineError) -> HttpResponse:
    return error(request, str(exc), 503)


class Forbidden(Exception):
    pass


class Conflict(Exception):
    pass


@api.exception_handler(Conflict)
def conflict(request: HttpRequest, exc: Conflict) -> HttpResponse:
    return error(request, str(exc), 409)


@api.exception_handler(Forbidden)
def forbidden(request: HttpRequest, exc: Forbidden) -> HttpResponse:
    return error(request, "Only the database's administrators can do this.", 403)


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
        raise Forbidden()
    return database


@api.get("/databases", response=list[DatabaseOut], summary="The databases linked to the account")
def list_databases(request: HttpRequest) -> list[DatabaseOut]:
    memberships = Membership.objects.filter(
        user=request.user.pk, database__name__isnull=False
    ).select_related("database")
    return [database_out(m.database, m.role) for m in memberships.order_by("database__name")]


@api.post("/databases", response={201: DatabaseOut}, summary="Create a database")
def create_database(request: HttpRequest, payload: NameIn) -> Status:
    database = Database.create_for(request.user, payload.name.strip().lower())  # type: ignore[arg-type]
    return Status(201, database_out(database, Membership.Role.ADMIN))


@api.get("/databases/{name}", response=DatabaseOut, summary="One database")
def read_database(request: HttpRequest, name: str) -> DatabaseOut:
    database, role = get_database(request.user, name)  # type: ignore[arg-type]
    return database_out(database, role)


@api.patch("/databases/{name}", response=DatabaseOut, summary="Rename a database")
def rename_database(request: HttpRequest, name: str, payload: NameIn) -> DatabaseOut:
    database = admin_database(request, name)
    database.rename(payload.name.strip().lower())
    return database_out(database, Membership.Role.ADMIN)


@api.delete("/databases/{name}", response={202: OperationOut}, summary="Delete a database")
def delete_database(request: HttpRequest, name: str) -> Status:
    database = admin_database(request, name)
    return Status(202, lifecycle.start_delete(database, by=request.user))


@api.post(
    "/databases/{name}/duplicate", response={202: OperationOut}, summary="Duplicate a database"
)
def duplicate_database(request: HttpRequest, name: str, payload: DuplicateIn) -> Status:
    database = admin_database(request, name)
    operation = lifecycle.start_duplicate(
        database, payload.name.strip().lower(), payload.for_testing, by=request.user
    )
    return Status(202, operation)


@api.get("/operations/{operation_id}", response=OperationOut, summary="A long action's progress")
def read_operation(request: HttpRequest, operation_id: int) -> Operation:
    return get_operation(request.user, operation_id)  # type: ignore[arg-type]


@api.get("/databases/{name}/download", summary="The database's backup ZIP, streamed")
def download_database(request: HttpRequest, name: str) -> StreamingHttpResponse:
    from tenantry.databases.views import backup_response

    return backup_response(admin_database(request, name))


class BackupOut(Schema):
    id: int
    created_at: datetime
    kind: str
    release: str
    engine: str
    size: int


@api.get("/databases/{name}/backups", response=list[BackupOut], summary="Stored backups")
def list_backups(request: HttpRequest, name: str) -> list[Backup]:
    database = admin_database(request, name)
    return list(database.backups.stored())  # type: ignore[attr-defined]


@api.get("/databases/{name}/backups/{backup_id}/download", summary="A stored backup's ZIP")
def download_backup(request: HttpRequest, name: str, backup_id: int) -> HttpResponseBase:
    database = admin_database(request, name)
    backup = get_backup(request.user, backup_id, database)  # type: ignore[arg-type]
    return store.response(backup, database.name or "")


@api.post(
    "/databases/{name}/restore",
    response={202: OperationOut},
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
    target: Database | str = name.strip().lower()
    if existing is not None:
        target = admin_database(request, name)
        if not replace:
            raise Conflict(
                f"“{name}” exists. Send replace=true to restore over it (it is backed up "
                "first), or choose the name of a new database."
            )
    if (file is None) == (backup is None):
        raise DjangoValidationError("Send either a backup ZIP as `file` or a stored `backup` id.")
    source = get_backup(user, backup) if backup is not None else restore.keep_upload(file, user)
    return Status(202, restore.start(source, target, user, as_copy, neutralize))


class UserOut(Schema):
    email: str
    role: str
    status: str  # "member", or "invited" while the invitation is pending


class InviteIn(Schema):
    emails: list[str]
    role: str = Membership.Role.USER


@api.get("/databases/{name}/users", response=list[UserOut], summary="Users and invitations")
def list_users(request: HttpRequest, name: str) -> list[dict[str, str]]:
    return members.listing(admin_database(request, name))


@api.post("/databases/{name}/users", response={201: list[UserOut]}, summary="Invite users by email")
def invite_users(request: HttpRequest, name: str, payload: InviteIn) -> Status:
    database = admin_database(request, name)
    emails = members.parse_emails(" ".join(payload.emails))
    sent = members.invite(database, emails, payload.role, by=request.user)  # type: ignore[arg-type]
    return Status(201, [UserOut(email=i.email, role=i.role, status="invited") for i in sent])


@api.delete(
    "/databases/{name}/users/{email}", response={204: None}, summary="Remove a user or invitation"
)
def remove_user(request: HttpRequest, name: str, email: str) -> Status:
    members.remove_email(admin_database(request, name), email)
    return Status(204, None)
