"""Every lookup of a database goes through here: outsiders get 404, members without the
right role 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase

from tenantry.accounts.models import User
from tenantry.databases.models import Database, Membership
from tenantry.operations.models import Operation
from tenantry.releases.models import Upgrade

if TYPE_CHECKING:
    from tenantry.backups.models import Backup


def get_database(user: User, name: str) -> tuple[Database, str]:
    """The database named `name` and the account's role in it, or 404."""
    membership = (
        Membership.objects.select_related("database").filter(user=user, database__name=name).first()
    )
    if membership is None:
        raise Http404(f"No database “{name}”.")
    return membership.database, membership.role


def get_operation(user: User, operation_id: int) -> Operation:
    """An operation the account started or on a database it belongs to, or 404."""
    visible = Operation.objects.filter(created_by=user) | Operation.objects.filter(
        database__memberships__user=user
    )
    found = visible.distinct().filter(pk=operation_id).first()
    if found is None:
        raise Http404(f"No operation {operation_id}.")
    return found


def get_backup(user: User, backup_id: Any, database: Database | None = None) -> Backup:
    """A stored backup of a database the account administers (of `database`, when given),
    or 404. Uploads, someone's restore under way, are never found."""
    from tenantry.backups.models import Backup

    found = Backup.objects.stored().filter(
        database__memberships__user=user, database__memberships__role=Membership.Role.ADMIN
    )
    if database is not None:
        found = found.filter(database=database)
    backup = found.filter(pk=as_pk(backup_id)).first()
    if backup is None:
        raise Http404(f"No backup {backup_id}.")
    return backup


def upgrades_for(user: User) -> QuerySet[Upgrade]:
    """The upgrade reports the account may read: those it asked for (kept when the database
    is deleted), and those of a database, or of a test copy, it administers."""
    administered = Membership.objects.filter(user=user, role=Membership.Role.ADMIN)
    databases = administered.values("database")
    return Upgrade.objects.filter(
        Q(created_by=user) | Q(database__in=databases) | Q(copy__in=databases)
    )


def get_upgrade(user: User, upgrade_id: Any) -> Upgrade:
    """An upgrade report the account may read, or 404."""
    found = upgrades_for(user).filter(pk=as_pk(upgrade_id)).first()
    if found is None:
        raise Http404(f"No upgrade report {upgrade_id}.")
    return found


def as_pk(value: Any) -> int:
    """A primary key from a form or a query string; 0 (found nowhere) for anything else:
    "²" is a digit to str.isdigit(), and a number past 64 bits a database error."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else 0


def database_admin_required(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """Passes the database to the view; members who are not administrators get 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, name: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
        database, role = get_database(request.user, name)  # type: ignore[arg-type]
        if role != Membership.Role.ADMIN:
            # Django's 403 page (templates/403.html) says it, in the portal's look.
            raise PermissionDenied("Only the database's administrators can manage it.")
        return view(request, database, *args, **kwargs)

    return wrapper
