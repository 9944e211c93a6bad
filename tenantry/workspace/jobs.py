"""The workspace's scheduled jobs, run by the periodic sweep in every live database.

A neutralized copy has its jobs off: they do not run there at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

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


def run_due(database: Database, now: datetime | None = None) -> None:
    now = now or timezone.now()
    with tenant.using(database) as db:
        due = ws.ScheduledJob.objects.using(db).filter(active=True, next_run_at__lte=now)
        for job in due:
            run = JOBS.get(job.name)
            if run is not None:
                run(db, database, now)
            job.next_run_at = now + timedelta(minutes=job.interval_minutes)
            job.save(using=db, update_fields=["next_run_at"])


def run_everywhere(now: datetime) -> None:
    """Every live database's due jobs; one failing database does not stop the others."""
    from tenantry.databases.models import Database

    live = Database.objects.filter(status=Database.Status.ACTIVE).exclude(name=None)
    for database in live.select_related("server"):
        if database.is_expired:
            continue
        try:
            run_due(database, now)
        except Exception:
            logger.exception("Scheduled jobs failed in %s", database.name)
