"""The activity log: who did what to a database, from which channel and address, and how it
ended (see models.Activity).

Each verb writes its entry in the transaction of the change it records, so there is an entry
exactly when there is a change, and a failure to write it fails the action. A refusal is
written on its own, with its sentence. An action that runs as an operation writes "started",
and its entry takes the operation's end (done, or failed with the reason).

The channel and address come from where the action was asked: the portal or the API (set per
request by `middleware`), the sweep (`channel("sweep")`), the support desk (`by_support`),
else the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from tenantry.accounts.lockout import client_address
from tenantry.accounts.models import User
from tenantry.databases.models import Activity, Database
from tenantry.operations.models import Operation, finished

Kind, Result = Activity.Kind, Activity.Result


@dataclass(frozen=True)
class Where:
    channel: str
    ip: str | None = None
    staff: User | None = None  # at the support desk


# Unset: a command typed by an operator.
_where: ContextVar[Where | None] = ContextVar("tenantry_activity_where", default=None)


@contextmanager
def channel(name: str, ip: str | None = None, staff: User | None = None) -> Iterator[None]:
    token = _where.set(Where(name, ip, staff))
    try:
        yield
    finally:
        _where.reset(token)


def by_support(request: HttpRequest) -> AbstractContextManager[None]:
    """A staff member acting at the support desk: the verbs are called with `by=None` (as
    Tenantry, past the customers' own checks), and their entries say "support", with the staff
    account kept beside it."""
    return channel(Activity.Channel.SUPPORT, client_address(request), staff=request.user)  # type: ignore[arg-type]


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    """The portal's and the API's requests: their channel and the client's address."""

    def handle(request: HttpRequest) -> HttpResponse:
        name = Activity.Channel.API if request.path.startswith("/api/") else Activity.Channel.PORTAL
        with channel(name, client_address(request)):
            return get_response(request)

    return handle


def record(
    database: Database,
    kind: str,
    *,
    by: User | None,
    detail: str = "",
    result: str = Result.DONE,
    reason: str = "",
    operation: Operation | None = None,
) -> Activity:
    where = _where.get() or Where(Activity.Channel.CLI)
    actor = by.email if by else "Tenantry"
    if where.staff is not None:
        by, actor = where.staff, "support"
    return Activity.objects.create(
        database=database,
        database_name=database.name or "",
        database_uuid=database.uuid,
        owner_id=database.created_by_id,
        account=by,
        actor=actor,
        kind=kind,
        detail=detail[:500],
        channel=where.channel,
        ip=where.ip,
        result=result,
        reason=reason,
        operation=operation,
    )


@contextmanager
def refusals(database: Database, kind: str, *, by: User | None, detail: str = "") -> Iterator[None]:
    """Record a refusal of the action with its sentence (then let it go on to the channel)."""
    try:
        yield
    except ValidationError as error:
        reason = " ".join(error.messages)
        record(database, kind, by=by, detail=detail, result=Result.REFUSED, reason=reason)
        raise


@receiver(finished)
def on_operation_end(sender: Any, operation: Operation, **kwargs: Any) -> None:
    ended = Result.DONE if operation.state == Operation.State.DONE else Result.FAILED
    entries = Activity.objects.filter(operation=operation, result=Result.STARTED)
    entries.update(result=ended, reason=operation.error)


def purge(now: datetime) -> None:
    """Entries older than TENANTRY_ACTIVITY_DAYS."""
    Activity.objects.filter(created_at__lt=now - timedelta(days=settings.ACTIVITY_DAYS)).delete()
