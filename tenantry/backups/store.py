"""Backups in the backup storage: written as they are made, read back, kept or pruned.

The storage is Django's storage API (`STORAGES["backups"]`): folders under the data dir by
default, an S3 bucket through django-storages in production. A ZIP flows from the dump into the
storage chunk by chunk; nothing is staged on local disk first.
"""

from __future__ import annotations

import errno
import io
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.http import FileResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.tasks import task
from django.utils import timezone

from tenantry.backups import archive
from tenantry.backups.models import Backup
from tenantry.billing import quotas
from tenantry.databases import activity
from tenantry.engines.base import EngineError
from tenantry.operations.models import Due

if TYPE_CHECKING:
    from tenantry.accounts.models import User
    from tenantry.databases.models import Database
    from tenantry.operations.models import Operation

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)
# Daily backups kept: the newest of each of the last 7 days, 4 weeks and 3 months.
RETENTION: tuple[tuple[int, Callable[[datetime], tuple[int, ...]]], ...] = (
    (7, lambda t: (t.year, t.month, t.day)),
    (4, lambda t: tuple(t.isocalendar())[:2]),
    (3, lambda t: (t.year, t.month)),
)
FULL = "The backup storage is full: the backup was not kept, and nothing else was changed."
# Backups taken before a restore or an upgrade are kept this long.
BEFORE_KEPT = timedelta(days=30)
# A backup being written touches its record this often; one quiet for STALE was abandoned.
BEAT_SECONDS = 5
STALE = timedelta(minutes=10)


def storage() -> Storage:
    return storages["backups"]


class _Reader(io.RawIOBase):
    """A read-only file over an iterator of bytes: what storage.save() takes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def new_backup(
    database: Database | None, kind: str, *, by: User | None = None, **fields: Any
) -> Backup:
    """A record for a backup about to be written, with its own name in the storage."""
    now = fields.pop("created_at", None) or timezone.now()
    folder = database.physical_name if database else "uploads"
    return Backup.objects.create(
        database=database, kind=kind, created_by=by, created_at=now,
        path=f"{folder}/{now:%Y-%m-%d_%H%M%S}_{kind}_{secrets.token_hex(4)}.zip",
        release=database.release if database else "", engine=database.engine if database else "",
        **fields,
    )  # fmt: skip


def make(database: Database, kind: str, *, by: User | None = None) -> Backup:
    """Back the database up into the storage now."""
    backup = new_backup(database, kind, by=by)
    write(backup, archive.stream(database))
    return backup


def make_first(operation: Operation, database: Database, kind: str) -> None:
    """The backup an operation takes before it changes the database (a restore over it, an
    upgrade), once: the operation's params keep it, and one a crash cut short goes."""
    params = operation.params
    if "saved" in params:
        return
    unfinished = Backup.objects.filter(pk=params.get("saving", 0)).first()
    if unfinished is not None:
        discard(unfinished)
    with transaction.atomic():  # a crash between the two would leave a record nobody knows
        saved = new_backup(database, kind, by=operation.created_by)
        params["saving"] = saved.pk
        operation.save(update_fields=["params"])
    write(saved, archive.stream(database))
    params["saved"] = saved.pk
    operation.save(update_fields=["params"])


def write(backup: Backup, content: File | Iterator[bytes]) -> None:
    """Write the backup's file and mark it ready. `content` is a file (an upload: moved into
    a folder storage, not copied) or a stream of chunks, passed on as they come.

    If anything fails, neither the file nor the record is left behind.
    """
    if not isinstance(content, File):
        content = File(io.BufferedReader(_Reader(_beating(backup, content)), 1 << 20))
    try:
        backup.path = storage().save(backup.path, content)
        backup.size = storage().size(backup.path)
    except BaseException as error:
        discard(backup)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EngineError(FULL) from error
        raise
    backup.state = Backup.State.READY
    backup.save(update_fields=["path", "size", "state"])


def _beating(backup: Backup, chunks: Iterator[bytes]) -> Iterator[bytes]:
    last = 0.0
    for chunk in chunks:
        if time.monotonic() - last > BEAT_SECONDS:
            last = time.monotonic()
            Backup.objects.filter(pk=backup.pk).update(heartbeat_at=timezone.now())
        yield chunk


def discard(backup: Backup) -> None:
    """Remove the backup's file and its record."""
    try:
        storage().delete(backup.path)
    except Exception:
        logger.exception("Could not remove the backup file %s", backup.path)
    backup.delete()


def open_file(backup: Backup) -> IO[bytes]:
    """The backup's ZIP, seekable (zipfile reads its end first)."""
    return storage().open(backup.path, "rb")  # type: ignore[no-any-return]


def response(backup: Backup, name: str) -> HttpResponseBase:
    """A download of the stored file: read from the folder, or a short-lived S3 link."""
    filename = f"{name}_{backup.created_at:%Y-%m-%d_%H%M%S}.zip"
    try:
        local = storage().path(backup.path)
    except NotImplementedError:
        disposition = f'attachment; filename="{filename}"'
        url = storage().url(backup.path, parameters={"ResponseContentDisposition": disposition})  # type: ignore[call-arg]
        return HttpResponseRedirect(url)
    return FileResponse(open(local, "rb"), as_attachment=True, filename=filename)  # noqa: SIM115


def retained(backups: list[Backup]) -> set[int]:
    """The pks to keep among daily backups (newest first): 7 daily, 4 weekly, 3 monthly."""
    keep: set[int] = set()
    for count, period in RETENTION:
        seen: list[tuple[int, ...]] = []
        for backup in backups:
            key = period(backup.created_at)
            if key not in seen:
                if len(seen) == count:
                    break
                seen.append(key)
                keep.add(backup.pk)
    return keep


def prune(database: Database, now: datetime) -> None:
    """What the retention does not keep, but for the backups a restore under way reads."""
    daily = list(database.backups.filter(kind=Backup.Kind.DAILY, state=Backup.State.READY))  # type: ignore[attr-defined]
    keep = retained(daily) | restoring()
    old = database.backups.filter(  # type: ignore[attr-defined]
        kind__in=(Backup.Kind.BEFORE_RESTORE, Backup.Kind.BEFORE_UPGRADE),
        created_at__lt=now - BEFORE_KEPT,
    )
    for backup in [b for b in daily if b.pk not in keep] + [b for b in old if b.pk not in keep]:
        discard(backup)


def restoring() -> set[int]:
    """The backups that restores under way read."""
    from tenantry.operations.models import ACTIVE_STATES, Operation

    waiting = Operation.objects.filter(kind="restore", state__in=ACTIVE_STATES)
    return {pk for pk in waiting.values_list("params__backup", flat=True) if pk}


def remove_all(database: Database) -> None:
    for backup in database.backups.all():  # type: ignore[attr-defined]
        discard(backup)


def start_daily(due_id: int, now: datetime) -> None:
    """The daily backup of a database whose time has come (operations.due claimed it): its
    record now, written by a worker."""
    from tenantry.operations import due

    database = due.ready(due_id, now)
    if database is None:
        return
    writing = Backup.objects.filter(
        database=database, kind=Backup.Kind.DAILY, state=Backup.State.WRITING
    )
    if writing.exists():  # one at a time
        due.done(due_id, now + due.LATER)
        return
    # One made lately (a daily one restored from, or one of its copy's source): the next at
    # its time after that one.
    last = (
        database.backups.filter(kind=Backup.Kind.DAILY, state=Backup.State.READY)  # type: ignore[attr-defined]
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last is not None and due.next_backup(database, last) > now:
        due.done(due_id, due.next_backup(database, last))
        return
    backup = new_backup(database, Backup.Kind.DAILY, created_at=now)
    write_daily.enqueue(backup.pk)


def _next_daily(database: Database, made_at: datetime) -> None:
    """The daily backup's next time, made or failed: a day later, at its own time of day."""
    from tenantry.operations import due

    rows = Due.objects.filter(database=database, job=Due.Job.BACKUP)
    for pk in rows.values_list("pk", flat=True):
        due.done(pk, due.next_backup(database, made_at))


@task
def write_daily(backup_id: int) -> None:
    backup = Backup.objects.filter(pk=backup_id, state=Backup.State.WRITING).first()
    database = backup.database if backup else None
    if backup is None:
        return
    if database is None or database.status != database.Status.ACTIVE or database.name is None:
        discard(backup)
        if database is not None:
            _next_daily(database, backup.created_at)
        return
    Backup.objects.filter(pk=backup.pk).update(heartbeat_at=timezone.now())
    with activity.channel(activity.Activity.Channel.SWEEP):
        try:
            write(backup, archive.stream(database))
        except Exception as error:
            _next_daily(database, backup.created_at)
            # One line, not a traceback: the reason is in the record and the activity.
            logger.warning("The daily backup of %s failed: %s", database.name, error)
            with transaction.atomic():
                Backup.objects.create(
                    database=database, kind=backup.kind, state=Backup.State.FAILED,
                    path=backup.path, created_at=backup.created_at,
                )  # fmt: skip
                activity.record(
                    database, activity.Kind.BACKUP, by=None, detail="daily",
                    result=activity.Result.FAILED, reason=str(error) or type(error).__name__,
                )  # fmt: skip
            raise
        activity.record(database, activity.Kind.BACKUP, by=None, detail="daily")
    _next_daily(database, backup.created_at)
    prune(database, backup.created_at)
    # The manager's size and the storage limits' usage, measured again once a day.
    quotas.measure(database)


def remove_abandoned(now: datetime) -> None:
    """Files a dead process left half written, queued backups never run, uploads no restore
    waits for, and the records of failed daily backups once a day old."""
    writing = Backup.objects.filter(state=Backup.State.WRITING)
    for backup in writing.filter(heartbeat_at__lt=now - STALE) | writing.filter(
        heartbeat_at=None, created_at__lt=now - DAY
    ):
        discard(backup)
    stale = Backup.objects.filter(kind=Backup.Kind.UPLOAD, created_at__lt=now - DAY)
    for backup in stale.exclude(pk__in=restoring()):  # not while a restore waits for it
        discard(backup)
    Backup.objects.filter(state=Backup.State.FAILED, created_at__lt=now - DAY).delete()
