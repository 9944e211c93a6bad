"""Every verb on a database: create, rename, duplicate, delete, move, and the reservation of
a restore's new database. Portal, API, CLI and the sweep call these and nothing else.

Each takes the acting account as `by=` (None: Tenantry itself, the sweep) and writes its
activity entry (see activity.py). A refusal is a ValidationError with a code ("taken",
"busy", "expired", ...) that each channel translates once. Long verbs are operations whose
steps resume safely after a crash.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import store
from tenantry.billing import quotas
from tenantry.databases import activity
from tenantry.databases.models import (
    COPY_LIFETIME,
    MAX_LIVE_COPIES,
    Database,
    Membership,
    normalize_name,
    taken,
    validate_name,
)
from tenantry.engines import filestore
from tenantry.engines.fleet import engine_for, place, server_engine
from tenantry.engines.models import Server
from tenantry.operations.models import KINDS, Kind, Operation, OperationBusy
from tenantry.releases import models as releases
from tenantry.workspace import tenant
from tenantry.workspace.mail import hold_queued


def reserve(name: str, *, by: User | None, **fields: Any) -> Database:
    """The record of a database to be made, under a name checked by the rules, with its
    physical name. A name taken at the same instant by someone else is refused as taken."""
    name = normalize_name(name)
    validate_name(name)
    if "source" not in fields:  # a database of its own starts a trial; a copy has its 15 days
        fields.setdefault("expires_at", timezone.now() + timedelta(days=settings.TRIAL_DAYS))
    if "engine" not in fields:
        server = place()
        fields |= {"server": server, "engine": "postgresql" if server else "sqlite"}
    try:
        with transaction.atomic():
            return Database.objects.create(
                name=name, physical_name=new_physical_name(), created_by=by, **fields
            )
    except IntegrityError:
        raise taken(name)


def new_physical_name() -> str:
    """Stable for a database's life (a rename never moves data), never reused."""
    return "tn_" + secrets.token_hex(10)


def create(name: str, *, by: User) -> Database:
    """A database at the latest release, ready at once; `by` becomes its administrator."""
    release = releases.latest()
    database = reserve(name, by=by, release=release)
    try:
        database.size_bytes = engine_for(database).create(database.physical_name, release)
        with tenant.using(database) as db:
            tenant.initialize(db, database, admin=by)
        database.status = Database.Status.ACTIVE
        with transaction.atomic():
            database.save(update_fields=["status", "size_bytes"])
            Membership.objects.create(database=database, user=by, role=Membership.Role.ADMIN)
            activity.record(database, activity.Kind.CREATE, by=by)
    except BaseException:
        engine_for(database).drop(database.physical_name)
        database.delete()
        raise
    return database


def rename(database: Database, new_name: str, *, by: User | None) -> None:
    new_name, old_name = normalize_name(new_name), database.name
    if new_name == old_name:
        return
    with activity.refusals(database, activity.Kind.RENAME, by=by, detail=f"to {new_name}"):
        database.refuse_if_expired()
        validate_name(new_name)
        try:
            with transaction.atomic():
                database.name = new_name
                database.save(update_fields=["name"])
                detail = f"from {old_name} to {new_name}"
                activity.record(database, activity.Kind.RENAME, by=by, detail=detail)
        except IntegrityError:
            database.name = old_name
            raise taken(new_name)


def start_duplicate(
    source: Database,
    name: str,
    *,
    for_testing: bool = True,
    by: User | None,
    now: datetime | None = None,
) -> Operation:
    """Reserve the copy's name and record, then let the worker copy."""
    name = normalize_name(name)
    kind = "test copy" if for_testing else "live copy"
    with activity.refusals(source, activity.Kind.DUPLICATE, by=by, detail=f"to {name} ({kind})"):
        if source.status != Database.Status.ACTIVE:
            raise ValidationError(
                f"“{source.name}” cannot be copied while it is being changed.", code="busy"
            )
        source.refuse_if_expired()  # a copy would be a live database again, for 15 days
        quotas.refuse_copy(source)
        if source.live_copies().count() >= MAX_LIVE_COPIES:
            raise ValidationError(
                f"“{source.name}” already has {MAX_LIVE_COPIES} live copies. "
                "Delete one before making another.",
                code="limit",
            )
        with transaction.atomic():
            copy = reserve_copy(source, name, for_testing=for_testing, by=by, now=now)
            operation = Operation.start(
                "duplicate", source, by=by, target=copy, params={"for_testing": for_testing}
            )
            detail = f"to {name} ({kind})"
            activity.record(
                source, activity.Kind.DUPLICATE, by=by, detail=detail,
                result=activity.Result.STARTED, operation=operation,
            )  # fmt: skip
            activity.record(
                copy, activity.Kind.CREATE, by=by, detail=f"as a {kind} of {source.name}",
                result=activity.Result.STARTED, operation=operation,
            )  # fmt: skip
            return operation


def reserve_copy(
    source: Database, name: str, *, for_testing: bool, by: User | None,
    now: datetime | None = None, staging: bool = True,
) -> Database:  # fmt: skip
    """The record of a copy of `source` (a duplicate, a test upgrade's copy), for 15 days;
    a duplicate of a trial project's database, by an administrator of its production, is one
    of its staging databases, and stays. It counts the source's size until measured."""
    project = source.project if staging else None
    production = project.production if project else None
    if production is not None and by is not None and production.role_of(by) != "admin":
        project = None  # someone the client removed from production: a plain copy
    expires_at = None if project else (now or timezone.now()) + COPY_LIFETIME
    return reserve(
        name, by=by, engine=source.engine,
        server=source.server,  # a template copy stays on the source's server
        release=source.release, source=source, is_test_copy=for_testing,
        expires_at=expires_at, project=project, size_bytes=source.size_bytes,
    )  # fmt: skip


def run_duplicate(operation: Operation) -> None:
    source, copy = operation.database, operation.target
    if source is None or copy is None:
        raise ValidationError("The database to copy no longer exists.")
    if copy.status == Database.Status.ACTIVE:
        return  # opened before a crash ended its worker: nothing is left to do
    engine = engine_for(source)
    operation.advance(5, "Copying the database")
    engine.drop(copy.physical_name)  # what a crashed attempt may have left
    engine.clone(source.physical_name, copy.physical_name)
    operation.advance(60, "Copying the files")
    filestore.copy(source.physical_name, copy.physical_name)
    operation.advance(80, "Giving the copy its own identity")
    with tenant.using(copy) as db:
        tenant.set_identity(db, copy.uuid, copy.is_test_copy, copy.expires_at)
        if operation.params.get("for_testing"):
            operation.advance(85, "Neutralizing: mail, payments, carriers and jobs off")
            tenant.neutralize(db)
        else:  # the source sends what it had queued; an administrator may release them here
            hold_queued(db)
    operation.advance(95, "Opening the copy")
    quotas.measure(copy)
    copy.status = Database.Status.ACTIVE
    with transaction.atomic():
        copy.save(update_fields=["size_bytes", "status"])
        for member in source.memberships.all():  # type: ignore[attr-defined]
            Membership.objects.get_or_create(
                database=copy, user=member.user, defaults={"role": member.role}
            )


def undo_duplicate(operation: Operation) -> None:
    source, copy = operation.database, operation.target
    if copy is not None:
        drop_storage(copy)
        copy.delete()
        operation.target = None
    if source is not None:
        engine_for(source).release(source.physical_name)  # if a killed worker held it


def start_delete(database: Database, *, by: User | None) -> Operation:
    with activity.refusals(database, activity.Kind.DELETE, by=by):
        database.refuse_if_expired()
        refusal = database.deletion_refusal()
        if refusal:  # linked to a subscription
            raise ValidationError(refusal, code="linked")
        if database.status != Database.Status.ACTIVE:
            raise ValidationError(
                f"“{database.name}” is being changed and cannot be deleted now.", code="busy"
            )
        return _begin_delete(database, by=by)


def _begin_delete(database: Database, *, by: User | None) -> Operation:
    with transaction.atomic():
        operation = Operation.start("delete", database, by=by)
        activity.record(
            database,
            activity.Kind.DELETE,
            by=by,
            result=activity.Result.STARTED,
            operation=operation,
        )
        # The name and its custom domains are free again at once; the storage goes in the
        # worker.
        database.domains.all().delete()  # type: ignore[attr-defined]
        database.primary_domain = ""
        database.name = None
        database.status = Database.Status.DELETING
        database.save(update_fields=["name", "status", "primary_domain"])
    return operation


def run_delete(operation: Operation) -> None:
    database = operation.database
    if database is None:
        return  # a crash after the last step: nothing is left
    operation.advance(10, "Deleting the database")
    drop_storage(database)
    operation.advance(90, "Removing the record")
    database.delete()
    operation.database = None


def undo_delete(operation: Operation) -> None:
    # A delete is never undone: its next attempt resumes it (see the sweep).
    pass


def start_move(database: Database, to: Server, *, by: User | None) -> Operation:
    with activity.refusals(database, activity.Kind.MOVE, by=by, detail=f"to {to.name}"):
        if database.server is None:
            raise ValidationError(
                f"“{database.name}” is a SQLite database: it has no server to leave."
            )
        if database.server_id == to.pk:
            raise ValidationError(f"“{database.name}” is already on {to.name}.")
        params = {"from": database.server_id, "to": to.pk}
        with transaction.atomic():
            operation = Operation.start("move", database, by=by, params=params)
            detail = f"from {database.server.name} to {to.name}"
            activity.record(
                database, activity.Kind.MOVE, by=by, detail=detail,
                result=activity.Result.STARTED, operation=operation,
            )  # fmt: skip
        return operation


def run_move(operation: Operation) -> None:
    database = operation.database
    if database is None:
        raise ValidationError("The database to move no longer exists.")
    old = server_engine(Server.objects.get(pk=operation.params["from"]))
    new = Server.objects.get(pk=operation.params["to"])
    if database.server_id != new.pk:
        operation.advance(10, f"Copying to {new.name}")
        # Read-only meanwhile: no write may land in the copy being left. A write refused
        # meanwhile waits for the switch, then is done on the new server (workspace.views.page).
        with old.read_only(database.physical_name):
            old.move(database.physical_name, server_engine(new))
            Database.objects.filter(pk=database.pk).update(server=new)
            operation.advance(90, "Removing the old copy")
            # Still read-only: a request that found the record before the switch may yet open a
            # session there. The drop lets the readers finish (see PostgreSQLEngine.drop).
            old.drop(database.physical_name)
        return
    operation.advance(90, "Removing the old copy")  # the switch was made by a worker that died
    old.drop(database.physical_name)


def undo_move(operation: Operation) -> None:
    database = operation.database
    if database is None:
        return
    database.refresh_from_db()  # the switch updates the record, not this copy of it
    old = Server.objects.filter(pk=operation.params["from"]).first()
    new = Server.objects.filter(pk=operation.params["to"]).first()
    if new is not None and database.server_id != new.pk:
        server_engine(new).drop(database.physical_name)
    if old is not None:
        server_engine(old).release(database.physical_name)  # if a killed worker held it


KINDS["duplicate"] = Kind("Duplicate", run_duplicate, undo_duplicate)
KINDS["move"] = Kind("Move", run_move, undo_move)
KINDS["delete"] = Kind("Delete", run_delete, undo_delete)


MAX_EXTENSION_DAYS = 90


def extend(database: Database, days: int, *, by: User | None) -> None:
    """More time for a trial or a copy (support's): `days` from its end, or from now if it has
    ended. It lives again at once, and its reminders are sent again before the new end."""
    detail = f"by {days} day{'' if days == 1 else 's'}"
    with activity.refusals(database, activity.Kind.EXPIRY, by=by, detail=detail):
        if not 1 <= days <= MAX_EXTENSION_DAYS:
            raise ValidationError(
                f"Extend by 1 to {MAX_EXTENSION_DAYS} days, not {days}.", code="invalid"
            )
        if database.status != Database.Status.ACTIVE:
            raise ValidationError(f"“{database.name}” is being changed: try again.", code="busy")
        if database.subscription_id is not None:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” is paid for by the subscription "
                f"{database.subscription_code}: it lasts as long as the subscription. Unlink it "
                "first to give it time of its own.",
                code="linked",
            )
        if database.project_id is not None and database.source_id is not None:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” is a staging database of a trial project: it ends with "
                "the project's production database.",
                code="invalid",
            )
    now = timezone.now()
    with transaction.atomic():
        start = max(database.expires_at or now, now)
        database.expires_at = start + timedelta(days=days)
        database.expired = False
        database.trial_reminded_days = database.expiry_warned_at = None
        database.save(
            update_fields=["expires_at", "expired", "trial_reminded_days", "expiry_warned_at"]
        )
        detail += f", until {database.expires_at:%Y-%m-%d}"
        activity.record(database, activity.Kind.EXPIRY, by=by, detail=detail)


def warn_of_expiry(now: datetime, ahead: timedelta) -> None:
    soon = Database.objects.filter(
        status=Database.Status.ACTIVE,
        source__isnull=False,  # copies (billing reminds trials)
        expires_at__lte=now + ahead,
        expires_at__gt=now,
        expiry_warned_at=None,
    )
    for database in soon:
        admins = database.memberships.filter(role=Membership.Role.ADMIN).select_related("user")  # type: ignore[attr-defined]
        for member in admins:
            get_adapter().send_mail(
                "databases/email/copy_expiring", member.user.email, {"database": database}
            )
        database.expiry_warned_at = now
        database.save(update_fields=["expiry_warned_at"])


def delete_expired_copies(now: datetime) -> None:
    expired = Database.objects.filter(
        status=Database.Status.ACTIVE, source__isnull=False, expires_at__lte=now
    ).filter(subscription=None)
    for database in expired:
        # Not start_delete: its rules protect people's databases, not expired copies.
        try:
            _begin_delete(database, by=None)
        except OperationBusy:
            continue  # its operation finishes first; the next sweep deletes it


def remove_abandoned_creations(now: datetime) -> None:
    """A create whose process died leaves a record 'being created' with no operation."""
    active = Operation.objects.filter(state__in=("queued", "running"))
    stale = (
        Database.objects.filter(
            status=Database.Status.CREATING, created_at__lt=now - timedelta(minutes=10)
        )
        # A copy being made is an operation's target; a restore's new database, its database.
        .exclude(pk__in=active.values("target"))
        .exclude(pk__in=active.values("database"))
    )
    for database in stale:
        drop_storage(database)
        database.delete()


def drop_storage(database: Database) -> None:
    """The database, its files and its stored backups."""
    engine_for(database).drop(database.physical_name)
    filestore.remove(database.physical_name)
    store.remove_all(database)
