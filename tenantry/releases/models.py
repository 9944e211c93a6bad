"""The workspace app's releases as the operator offers them: a release exists in the code (a
point in the workspace's migrations, workspace.releases) and is offered once published."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from tenantry.workspace.releases import LATEST, RELEASES

# A database below the latest major release must be upgraded within this many months of its
# publication; then the sweep upgrades it.
UPGRADE_MONTHS = 2


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def major(version: str) -> int:
    return version_key(version)[0]


def add_months(when: datetime, months: int) -> datetime:
    """The same day `months` later (or that month's last day: 31 December + 2 is 28 February)."""
    month = when.month - 1 + months
    year, month = when.year + month // 12, month % 12 + 1
    return when.replace(
        year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1])
    )


class ReleaseQuerySet(models.QuerySet["Release"]):
    def published(self) -> ReleaseQuerySet:
        return self.filter(published_at__lte=timezone.now())


class Release(models.Model):
    version = models.CharField(max_length=20, unique=True)
    # Offered from then on (None: not yet); new databases are made at the latest published.
    published_at = models.DateTimeField(null=True, blank=True)
    deprecated = models.BooleanField(default=False)

    objects = ReleaseQuerySet.as_manager()

    def __str__(self) -> str:
        return self.version

    @property
    def version_key(self) -> tuple[int, ...]:
        return version_key(self.version)

    @property
    def is_published(self) -> bool:
        return self.published_at is not None and self.published_at <= timezone.now()


def latest() -> str:
    """The latest published release: new databases are made at it. With no release recorded
    at all (a table emptied by hand, or by a test), the code's latest."""
    versions = list(Release.objects.published().values_list("version", flat=True))
    if not versions:
        if Release.objects.exists():
            raise ValidationError(
                "No release is published: `tenantry releases publish VERSION` first.",
                code="unavailable",
            )
        return LATEST
    return max(versions, key=version_key)


def publish(version: str, when: datetime | None = None) -> Release:
    if version not in RELEASES:
        known = ", ".join(sorted(RELEASES, key=version_key))
        raise ValidationError(
            f"There is no release {version} in this Tenantry (it has {known}).", code="invalid"
        )
    release, _ = Release.objects.get_or_create(version=version)
    release.published_at = when or timezone.now()
    release.save(update_fields=["published_at"])
    return release


def deprecate(version: str) -> Release:
    release = Release.objects.filter(version=version).first()
    if release is None or release.published_at is None:
        raise ValidationError(f"The release {version} is not published.", code="invalid")
    if version == latest():
        raise ValidationError(
            f"{version} is the latest published release: publish a newer one first.",
            code="invalid",
        )
    release.deprecated = True
    release.save(update_fields=["deprecated"])
    return release


class Published:
    """The releases published at a moment, read once: what each database is offered, and by
    when it must upgrade (a page of databases asks for each of them)."""

    def __init__(self, now: datetime | None = None) -> None:
        rows = Release.objects.filter(published_at__lte=now or timezone.now())
        self.releases = sorted(rows, key=lambda release: release.version_key)
        self.deprecated = {release.version for release in self.releases if release.deprecated}

    @property
    def latest(self) -> str | None:
        return self.releases[-1].version if self.releases else None

    def offered(self, current: str) -> list[str]:
        """The releases a database at `current` may upgrade to, oldest first."""
        return [
            release.version
            for release in self.releases
            if release.version_key > version_key(current) and not release.deprecated
        ]

    @property
    def major(self) -> Release | None:
        """The first published release of the latest major (2.0, unless 2.0 never was)."""
        if self.latest is None:
            return None
        return next(r for r in self.releases if major(r.version) == major(self.latest))

    def deadline(self, current: str) -> datetime | None:
        """Below the latest major: two months after that major's first publication."""
        first = self.major
        if first is None or major(current) >= major(first.version):
            return None
        assert first.published_at is not None
        return add_months(first.published_at, UPGRADE_MONTHS)


class Upgrade(models.Model):
    """An upgrade and its report: how it went, step by step, and each table's rows before and
    after. A test upgrade's subject is its copy."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    operation = models.OneToOneField(
        "operations.Operation", models.SET_NULL, null=True, related_name="upgrade"
    )
    database = models.ForeignKey(
        "databases.Database", models.SET_NULL, null=True, related_name="upgrades"
    )
    database_name = models.CharField(max_length=63)
    copy = models.ForeignKey(
        "databases.Database", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    test = models.BooleanField(default=False)
    automatic = models.BooleanField(default=False)
    from_release = models.CharField(max_length=20)
    to_release = models.CharField(max_length=20)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    # The migrations run, in order, and the one that failed with its message.
    steps = models.JSONField(default=list)
    failed_step = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    # [{"table": ..., "before": rows or None, "after": rows or None}, ...]
    tables = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        kind = "Test upgrade" if self.test else "Upgrade"
        return f"{kind} of {self.database_name} to {self.to_release}"

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @property
    def duration_text(self) -> str:
        """The duration as people read it ("0.6 s", "3 min 12 s"); empty while it runs."""
        if self.duration is None:
            return ""
        seconds = self.duration.total_seconds()
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
