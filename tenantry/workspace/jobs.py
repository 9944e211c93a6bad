"""The workspace's scheduled jobs, run by the periodic sweep in every live database.

A neutralized copy has its jobs off: they do not run there at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.tasks import task
from django.utils import timezone

from tenantry.engines import filestore
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tenantry.workspace.mail import send_queued, sender_for

if TYPE_CHECKING:
    from tenantry.databases.models import Database

logger = logging.getLogger(__name__)
# A file newer than this may belong to an upload whose record is not written yet.
UNUSED_FILE_AGE = timedelta(days=1)


def send_mail(db: str, database: Database, now: datetime) -> None:
    send_queued(db, sender_for(database.name or ""))


def clean_attachments(db: str, database: Database, now: datetime) -> None:
    """Remove filestore files that no attachment uses any more, and those a killed process
    left half written."""
    used = set(ws.Attachment.objects.using(db).values_list("sha256", flat=True))
    old = time.time() - UNUSED_FILE_AGE.total_seconds()
    root = filestore.root(database.physical_name)
    for path in [*root.glob("??/*"), *root.glob(filestore.PARTIAL + "*")]:
        try:
            if path.name not in used and path.stat().st_mtime < old:
                path.unlink()
        except FileNotFoundError:  # a half-written file that has just become whole
            pass


JOBS: dict[str, Callable[[str, Database, datetime], None]] = {
    "Send queued mail": send_mail,
    "Clean up unused attachments": clean_attachments,
}


def run_due(database: Database, now: datetime | None = None) -> datetime | None:
    """Its due jobs; returns when the next one is due (None: it has none active)."""
    now = now or timezone.now()
    with tenant.using(database) as db:
        jobs = ws.ScheduledJob.objects.using(db).filter(active=True)
        for job in jobs.filter(next_run_at__lte=now):
            run = JOBS.get(job.name)
            if run is not None:
                run(db, database, now)
            job.next_run_at = now + timedelta(minutes=job.interval_minutes)
            job.save(using=db, update_fields=["next_run_at"])
        return jobs.order_by("next_run_at").values_list("next_run_at", flat=True).first()


@task
def send_now(database_id: int) -> None:
    """Mail a workspace has just queued: sent within seconds, not at its job's next run (each
    mail is claimed before it goes: never sent twice, whoever else sends)."""
    from tenantry.databases.models import Database

    database = Database.objects.select_related("server").filter(pk=database_id).first()
    if database is None or database.name is None or database.status != Database.Status.ACTIVE:
        return
    with tenant.using(database) as db:
        send_queued(db, sender_for(database.name))
