"""The upgrade: a database taken to a newer release of the workspace app, or a test of it.

A production upgrade backs the database up first (kind "before upgrade"), then runs every
migration to the target in one transaction on the database itself, so a failure at any step
rolls all of it back: the database stays as it was, release and data. Readers go on meanwhile
(SQLite's WAL; on PostgreSQL, those of the tables no migration changes), and writers wait
for the transaction; a request that waits too long (60 s for a SQLite writer, 5 s for a lock
on PostgreSQL) gets the "being upgraded" page (tenant.using). A worker killed midway leaves a
transaction never committed, which the database rolls back, and the operation runs again.

On SQLite the migrations fit in one transaction because foreign keys are switched off for the
connection before it begins: Django's schema editor needs them off, and SQLite cannot switch
them inside a transaction. It works on the database itself, not on a copy swapped in at the
end: a writer waiting for the old file when it is swapped would write into the file dropped.

A test upgrade makes a test copy (the duplicate's rules) and upgrades the copy. Both write a
report (models.Upgrade): the steps, the one that failed with its message, the duration, and
each table's rows before and after; it is mailed to whoever asked (the administrators, for
the sweep's automatic upgrades).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from allauth.account.adapter import get_adapter
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Exists, OuterRef, Q
from django.dispatch import receiver
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import store
from tenantry.backups.models import Backup
from tenantry.databases import activity, lifecycle
from tenantry.databases.models import Database, Membership, validate_name
from tenantry.operations.models import ACTIVE_STATES, KINDS, Kind, Operation, finished
from tenantry.releases.models import Published, Release, Upgrade, latest, major, version_key
from tenantry.workspace import tenant
from tenantry.workspace.releases import RELEASES

logger = logging.getLogger(__name__)


def start(
    database: Database,
    release: str | None = None,
    *,
    test: bool = False,
    by: User | None,
    automatic: bool = False,
) -> Operation:
    """Upgrade the database to `release` (the latest published if None), or, with `test`, a
    test copy of it."""
    target = release or latest()
    detail = f"test upgrade to {target}" if test else f"to {target}"
    with activity.refusals(database, activity.Kind.UPGRADE, by=by, detail=detail):
        refuse_target(database, target)
        if database.status != Database.Status.ACTIVE:
            raise ValidationError(
                f"“{database.name}” is being changed and cannot be upgraded now.", code="busy"
            )
        database.refuse_if_expired()
        with transaction.atomic():
            copy = None
            if test:
                name = copy_name(database, target)
                copy = lifecycle.reserve_copy(
                    database, name, for_testing=True, by=by, staging=False
                )
            params = {"release": target, "test": test, "automatic": automatic}
            if test:
                params["for_testing"] = True  # the duplicate's own parameter
            operation = Operation.start("upgrade", database, by=by, target=copy, params=params)
            Upgrade.objects.create(
                operation=operation, database=database, database_name=database.name or "",
                copy=copy, test=test, automatic=automatic, from_release=database.release,
                to_release=target, created_by=by,
            )  # fmt: skip
            activity.record(
                database, activity.Kind.UPGRADE, by=by, detail=detail,
                result=activity.Result.STARTED, operation=operation,
            )  # fmt: skip
            if copy is not None:
                activity.record(
                    copy, activity.Kind.CREATE, by=by,
                    detail=f"as a test copy of {database.name}, to test the upgrade to {target}",
                    result=activity.Result.STARTED, operation=operation,
                )  # fmt: skip
        return operation


def retry(database: Database, *, by: User | None) -> Operation:
    """Support lifts a failed automatic upgrade and starts it again, to the latest release; if
    it fails again, the database waits for support again."""
    with activity.refusals(database, activity.Kind.UPGRADE, by=by, detail="started again"):
        if database.upgrade_failed_at is None:
            raise ValidationError(
                f"The automatic upgrade of “{database.name}” has not failed.", code="invalid"
            )
    # Not one transaction with start(), which would undo its refusal's entry with it. Lifted
    # after the start: a failure between the two leaves the upgrade running, and its success
    # lifts the failure too.
    operation = start(database, by=by, automatic=True)
    Database.objects.filter(pk=database.pk).update(upgrade_failed_at=None)
    database.upgrade_failed_at = None
    return operation


def refuse_target(database: Database, target: str) -> None:
    if target not in RELEASES:
        raise ValidationError(f"There is no release {target}.", code="invalid")
    release = Release.objects.filter(version=target).first()
    if release is None or not release.is_published:
        raise ValidationError(f"Release {target} is not published yet.", code="invalid")
    if release.deprecated:
        raise ValidationError(
            f"Release {target} is deprecated: choose a newer one.", code="invalid"
        )
    current = database.release
    if target == current:
        raise ValidationError(f"“{database.name}” is already at release {target}.", code="invalid")
    if version_key(target) < version_key(current):
        raise ValidationError(
            f"“{database.name}” is at release {current}: an upgrade cannot take it back to "
            f"{target}.",
            code="invalid",
        )


def copy_name(database: Database, target: str) -> str:
    """A free name for a test upgrade's copy: shop-upgrade-2-0, shop-upgrade-2-0-2, ..."""
    suffix = "-upgrade-" + target.replace(".", "-")
    base = (database.name or "")[: 63 - len(suffix) - 3].rstrip("-") + suffix
    for number in range(1, 100):
        name = base if number == 1 else f"{base}-{number}"
        if not Database.objects.filter(name=name).exists():
            validate_name(name)
            return name
    raise ValidationError(
        f"“{database.name}” has too many test copies: delete some first.", code="limit"
    )


def deadline(database: Database, published: Published) -> datetime | None:
    """When the database must be at the latest major release (test copies never must)."""
    return None if database.is_test_copy else published.deadline(database.release)


def offer(database: Database, published: Published) -> tuple[str | None, datetime | None]:
    """The latest release the database is offered (None: it is at the latest), and the date
    it must be upgraded by (None: it may ignore the offer)."""
    offered = published.offered(database.release)
    return (offered[-1] if offered else None), deadline(database, published)


# Administrators are reminded this many days before the deadline.
REMINDERS = (30, 7, 1)


def sweep(now: datetime) -> None:
    """Remind the administrators of databases below the latest major release of their
    deadline, and start the automatic upgrade of those whose deadline has come (once: if it
    fails, the database waits for support). Test copies and expired databases are left alone."""
    published = Published(now)
    target = published.major
    if target is None:
        return
    below = [v for v in RELEASES if major(v) < major(target.version)]
    by = published.deadline(below[0]) if below else None
    if by is None or now < by - timedelta(days=max(REMINDERS)):
        return  # one deadline for all: nobody to remind or upgrade yet
    candidates = (
        Database.objects.filter(
            status=Database.Status.ACTIVE, release__in=below, is_test_copy=False, expired=False
        )
        .exclude(name=None)
        .exclude(expires_at__lte=now)
    )
    if now < by:
        # Those not yet reminded this close to it: a pass costs the reminders it sends.
        days = min(d for d in REMINDERS if by - now <= timedelta(days=d))
        reminded = Q(reminded_for=target.version, reminded_days__lte=days)
        for database in candidates.exclude(reminded):
            _remind(database, by, target.version, now)
        return
    upgrading = Operation.objects.filter(
        database=OuterRef("pk"), kind="upgrade", state__in=ACTIVE_STATES
    )
    for database in candidates.filter(upgrade_failed_at=None).exclude(Exists(upgrading)):
        try:
            start(database, by=None, automatic=True)
        except ValidationError as error:  # busy: the next sweep tries again
            logger.info("No automatic upgrade of %s yet: %s", database.name, error.messages)


def _remind(database: Database, by: datetime, target: str, now: datetime) -> None:
    left = by - now
    days = min((d for d in REMINDERS if left <= timedelta(days=d)), default=None)
    if days is None:
        return
    sent = database.reminded_days if database.reminded_for == target else None
    if sent is not None and sent <= days:
        return
    admins = Membership.objects.filter(database=database, role=Membership.Role.ADMIN)
    context = {"database": database, "deadline": by, "release": target, "days": days}
    for email in admins.values_list("user__email", flat=True):
        get_adapter().send_mail("releases/email/upgrade_reminder", email, context)
    Database.objects.filter(pk=database.pk).update(reminded_for=target, reminded_days=days)


def run(operation: Operation) -> None:
    database = operation.database
    if database is None:
        raise ValidationError("The database to upgrade no longer exists.")
    params = operation.params
    if params["test"]:
        operation.span = (0, 50)
        lifecycle.run_duplicate(operation)
        operation.span = (50, 100)
        subject = operation.target
        assert subject is not None
    else:
        subject = database
        operation.advance(5, "Backing up the database first")
        store.make_first(operation, database, Backup.Kind.BEFORE_UPGRADE)
    _migrate(operation, subject, params["release"])


def _migrate(operation: Operation, database: Database, target: str) -> None:
    """Every migration to `target` in one transaction, with the report's steps and counts."""
    report = Upgrade.objects.get(operation=operation)
    operation.advance(30, f"Upgrading to {target}")
    with tenant.using(database) as alias:
        connection = connections[alias]
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA foreign_keys = OFF")
        step = ""

        def progress(
            action: str, migration: Migration | None = None, fake: bool | None = None, /
        ) -> None:
            nonlocal step
            if action == "apply_start" and migration is not None:
                step = migration.name
                report.steps.append(step)
                operation.advance(30 + 60 * len(report.steps) // len(plan), f"Running {step}")

        executor = MigrationExecutor(connection, progress)
        plan = executor.migration_plan([("workspace", RELEASES[target])])
        try:
            with transaction.atomic(using=alias):
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        # The upgrade waits for readers (a backup) as long as they need.
                        cursor.execute("SET LOCAL lock_timeout = 0")
                        # A killed worker's session ends at once, not at its statement's end.
                        cursor.execute("SET LOCAL client_connection_check_interval = '1s'")
                if plan:  # else a crash came after the commit: the counts before are kept
                    report.steps = []
                    report.tables = [
                        {"table": t, "before": n} for t, n in _rows(connection).items()
                    ]
                executor.migrate([("workspace", RELEASES[target])], plan=plan)
                after = _rows(connection)
        except Exception as error:
            report.failed_step, report.error = step, str(error) or type(error).__name__
            report.save(update_fields=["steps", "tables", "failed_step", "error"])
            where = f"at {step}" if step else "before its first step"
            raise ValidationError(
                f"The upgrade to {target} failed {where}: {report.error}. "
                f"“{database.name}” was left as it was, at release {database.release}."
            ) from error
        finally:
            if connection.vendor == "sqlite":
                with connection.cursor() as cursor:
                    cursor.execute("PRAGMA foreign_keys = ON")
    counted = {row["table"]: row for row in report.tables}
    for table, rows in after.items():
        counted.setdefault(table, {"table": table, "before": None})["after"] = rows
    report.tables = sorted(counted.values(), key=lambda row: row["table"])
    report.save(update_fields=["steps", "tables"])
    operation.advance(95, "Opening the upgraded database")
    Database.objects.filter(pk=database.pk).update(release=target, upgrade_failed_at=None)


def _rows(connection: BaseDatabaseWrapper) -> dict[str, int]:
    """Each workspace table's number of rows."""
    with connection.cursor() as cursor:
        tables = sorted(
            t for t in connection.introspection.table_names(cursor) if t.startswith("workspace_")
        )
        counts = {}
        for table in tables:
            quoted = connection.ops.quote_name(table)  # a name the introspection gave
            cursor.execute(f"SELECT COUNT(*) FROM {quoted}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def release_of(database: Database) -> str:
    """The release the database's own migrations say it is at."""
    with tenant.using(database) as alias:
        applied = MigrationRecorder(connections[alias]).applied_migrations()
    done = [v for v, name in RELEASES.items() if ("workspace", name) in applied]
    return max(done, key=version_key)


def undo(operation: Operation) -> None:
    if operation.params["test"]:
        lifecycle.undo_duplicate(operation)
        return
    database = operation.database
    if database is not None and database.status == Database.Status.ACTIVE:
        # A failure after the commit (writing the record) leaves the database upgraded: the
        # record follows what the database is.
        Database.objects.filter(pk=database.pk).update(release=release_of(database))


KINDS["upgrade"] = Kind("Upgrade", run, undo)


@receiver(finished)
def on_upgrade_end(sender: Any, operation: Operation, **kwargs: Any) -> None:
    """The report ends with its operation, whatever ended it; it is mailed."""
    report = Upgrade.objects.filter(operation=operation).first()
    if report is None:
        return
    failed = operation.state == Operation.State.FAILED
    report.state = Upgrade.State.FAILED if failed else Upgrade.State.SUCCEEDED
    report.error = report.error or (operation.error if failed else "")
    report.finished_at = operation.finished_at
    report.save(update_fields=["state", "error", "finished_at"])
    if failed and report.automatic and report.database_id is not None:  # type: ignore[attr-defined]
        Database.objects.filter(pk=report.database_id).update(  # type: ignore[attr-defined]
            upgrade_failed_at=timezone.now()
        )
    try:
        mail_report(report)
    except Exception:  # the report stays on its page; a mail server down fails no upgrade
        logger.exception("The report of upgrade %s could not be mailed", report.pk)


def mail_report(report: Upgrade) -> None:
    if report.created_by is not None:
        emails = [report.created_by.email]
    else:  # the sweep's: the administrators
        admins = Membership.objects.filter(database=report.database_id, role="admin")  # type: ignore[attr-defined]
        emails = list(admins.values_list("user__email", flat=True))
    for email in emails:
        get_adapter().send_mail("releases/email/upgrade_report", email, {"report": report})
