"""Each database's periodic work (its scheduled jobs, its daily backup), found by when it is
next due (models.Due, indexed): a pass of the sweep costs what is due, not the number of
databases. The sweep claims a due row until its lease ends and hands it to the workers as a
task; the task sets the next due time. A row claimed by a worker that died is claimed again
once its lease has passed.

Daily backups are spread over the day: each database has its own time of day (from its uuid),
so a fleet's backups do not all fall due in the same minute.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import F, Q
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.tasks import task
from django.utils import timezone

from tenantry.operations.models import Due

if TYPE_CHECKING:
    from tenantry.databases.models import Database

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)
# A claimed job not finished by then is taken to have lost its worker (a backup of a large
# database takes long: a worker that died during one is replaced later).
LEASES: dict[str, timedelta] = {
    Due.Job.JOBS: timedelta(minutes=30),
    Due.Job.BACKUP: timedelta(hours=6),
}
# Rows claimed by one pass at most; the rest wait for the next pass.
BATCH = 1000
# A database that cannot run its jobs (its storage missing, its server down) tries again after
# an hour, then two, four... up to a day.
BACKOFF = timedelta(hours=1)
# Not yet ready (being created, moved...) or expired: looked at again this much later.
LATER = timedelta(minutes=5)
EXPIRED_LATER = timedelta(hours=1)


def backup_time(database: Database) -> timedelta:
    """The database's own time of day for its backups."""
    return timedelta(seconds=database.uuid.int % 86400)


def next_backup(database: Database, after: datetime) -> datetime:
    """Its first backup time more than 12 hours after `after`: 24 hours after one made on
    time, and back to its own time of day after one made late (or its first, made at once)."""
    start = after + timedelta(hours=12)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    at = midnight + backup_time(database)
    return at if at > start else at + DAY


@receiver(post_save, sender="databases.Database")
def schedule_new(sender: Any, instance: Database, created: bool, **kwargs: Any) -> None:
    """A new database's jobs run at the next pass, and its first backup is made then."""
    if created:
        now = timezone.now()
        Due.objects.bulk_create(
            [Due(database=instance, job=job, due_at=now) for job in Due.Job.values],
            ignore_conflicts=True,
        )


def claim(now: datetime) -> int:
    """Claim what is due and hand it to the workers; returns how many."""
    free = Q(running_until=None) | Q(running_until__lt=now)
    due = Due.objects.filter(free, due_at__lte=now).order_by("due_at")
    count = 0
    for pk, job in list(due.values_list("pk", "job")[:BATCH]):
        # Claimed by one pass only, whatever the number of workers sweeping.
        if Due.objects.filter(free, pk=pk).update(running_until=now + LEASES[job]):
            if job == Due.Job.BACKUP:
                from tenantry.backups import store

                store.start_daily(pk, now)
            else:
                run_jobs.enqueue(pk, now.isoformat())
            count += 1
    return count


def done(pk: int, next_at: datetime) -> None:
    Due.objects.filter(pk=pk).update(due_at=next_at, running_until=None, failures=0)


def failed(pk: int, now: datetime) -> None:
    row = Due.objects.filter(pk=pk).first()
    if row is not None:
        wait = min(BACKOFF * 2**row.failures, DAY)
        Due.objects.filter(pk=pk).update(
            due_at=now + wait, running_until=None, failures=F("failures") + 1
        )


def ready(pk: int, now: datetime) -> Database | None:
    """The database of a claimed row, if its job may run now: a deleted database's row goes,
    and one being made or changed is looked at again a little later."""
    from tenantry.databases.models import Database

    row = Due.objects.select_related("database__server").filter(pk=pk).first()
    if row is None:
        return None
    database = row.database
    if database.name is None:  # deleted
        row.delete()
        return None
    if database.status != Database.Status.ACTIVE:
        done(pk, now + LATER)
        return None
    return database


@task
def run_jobs(pk: int, now_text: str) -> None:
    """A database's due scheduled jobs, then the time its next one is due."""
    from tenantry.workspace import jobs

    now = datetime.fromisoformat(now_text)
    database = ready(pk, now)
    if database is None:
        return
    if database.expired_at(now):
        done(pk, now + EXPIRED_LATER)
        return
    try:
        next_at = jobs.run_due(database, now)
    except Exception as error:
        # One line, not a traceback: a database without storage would repeat it every pass.
        logger.warning("Scheduled jobs failed in %s: %s", database.name, error)
        failed(pk, now)
        return
    done(pk, next_at or now + DAY)
