"""The workspace app's releases as the operator offers them: a release exists in the code (a
point in the workspace's migrations, workspace.releases) and is offered once published."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from tenantry.workspace.releases import LATEST, RELEASES


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


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


def deprecated_versions() -> set[str]:
    return set(Release.objects.filter(deprecated=True).values_list("version", flat=True))


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
