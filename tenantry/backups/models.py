"""Stored backups: the ZIPs kept in the backup storage, one record each."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class BackupQuerySet(models.QuerySet["Backup"]):
    def stored(self) -> BackupQuerySet:
        """The backups people see, download and restore: ready, and not someone's upload."""
        return self.filter(state=Backup.State.READY).exclude(kind=Backup.Kind.UPLOAD)


class Backup(models.Model):
    class Kind(models.TextChoices):
        DAILY = "daily", "Daily"
        BEFORE_RESTORE = "before_restore", "Before a restore"
        BEFORE_UPGRADE = "before_upgrade", "Before an upgrade"
        # A ZIP someone sent to restore; removed once its restore is over.
        UPLOAD = "upload", "Uploaded"

    class State(models.TextChoices):
        WRITING = "writing", "Being written"
        READY = "ready", "Ready"
        # A daily backup that could not be made (no file): the next attempt is a day later.
        FAILED = "failed", "Failed"

    database = models.ForeignKey(
        "databases.Database", models.CASCADE, null=True, blank=True, related_name="backups"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.WRITING, db_index=True
    )
    # The file's name in the backup storage.
    path = models.CharField(max_length=300, unique=True)
    size = models.BigIntegerField(default=0)
    release = models.CharField(max_length=20, blank=True)
    engine = models.CharField(max_length=20, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Set when writing starts and touched meanwhile: a quiet one was left by a dead process.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    objects = BackupQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["database", "kind", "created_at"])]

    def __str__(self) -> str:
        return self.path
