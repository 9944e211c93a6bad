"""Reaching the workspace app inside a tenant database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

from tenantry.engines.base import DatabaseHeld
from tenantry.engines.fleet import engine_for
from tenantry.workspace import models as ws

if TYPE_CHECKING:
    from tenantry.databases.models import Database


@contextmanager
def using(database: Database, physical: str = "") -> Iterator[str]:
    """The Django alias of the database's tenant connection, closed again afterwards, its
    session kept for the next request where the engine keeps sessions (`physical`: another
    physical database of the same engine, a restore being made)."""
    engine = engine_for(database)
    physical = physical or database.physical_name
    alias = engine.connect(physical)
    try:
        yield alias
    except DatabaseError as error:
        if _being_upgraded(database):
            raise DatabaseHeld(
                f"“{database.name}” is being upgraded to a new release: what you asked for was "
                "not done. Try again in a few minutes."
            ) from error
        if engine.write_was_held(error):
            raise DatabaseHeld(
                f"“{database.name}” is being copied, moved or restored: it can be read, but "
                "not changed, until that ends. Try again in a few minutes."
            ) from error
        raise
    finally:
        engine.disconnect(physical, keep=True)


def _being_upgraded(database: Database) -> bool:
    """An upgrade runs, or has just changed the database's release under the request (which
    used the former release's models)."""
    from tenantry.databases.models import Database
    from tenantry.operations.models import ACTIVE_STATES, Operation

    running = Operation.objects.filter(
        database=database.pk, kind="upgrade", state__in=ACTIVE_STATES
    )
    changed = Database.objects.filter(pk=database.pk).exclude(release=database.release)
    return running.exists() or changed.exists()


def initialize(db: str, database: Database, admin: Any) -> None:
    """A new database's identity and its first user, the creator, as administrator."""
    with transaction.atomic(using=db):
        ws.Settings.objects.using(db).create(uuid=database.uuid, created_at=database.created_at)
        ws.User.objects.using(db).create(
            login=admin.email, name=admin.name, contact_email=admin.email,
            account_id=admin.pk, is_admin=True,
        )  # fmt: skip


def set_identity(
    db: str, new_uuid: uuid.UUID, test_copy: bool, expires_at: datetime | None
) -> None:
    ws.Settings.objects.using(db).update(
        uuid=new_uuid, is_test_copy=test_copy, expires_at=expires_at
    )


def neutralize(db: str) -> None:
    """Cut every way a copy could reach the outside world: mail, payments, carriers, jobs."""
    with transaction.atomic(using=db):
        ws.MailServer.objects.using(db).update(active=False)
        ws.Mail.objects.using(db).filter(state=ws.Mail.State.QUEUED).update(
            state=ws.Mail.State.HELD
        )
        ws.PaymentProvider.objects.using(db).exclude(
            state=ws.PaymentProvider.State.DISABLED
        ).update(state=ws.PaymentProvider.State.DISABLED)
        ws.DeliveryCarrier.objects.using(db).update(production=False)
        ws.ScheduledJob.objects.using(db).update(active=False)
        ws.Settings.objects.using(db).update(is_test_copy=True)
