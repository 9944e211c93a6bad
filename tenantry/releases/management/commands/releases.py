from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from tenantry.databases.models import Database
from tenantry.releases import models as releases
from tenantry.workspace.releases import RELEASES


def day(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"{value!r} is not a date: write it YYYY-MM-DD.") from None


class Command(BaseCommand):
    # A command a person types: no system checks (see db).
    requires_system_checks: list[str] = []
    help = "The workspace app's releases: list, publish VERSION [--date], deprecate VERSION."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="every release: published, supported or deprecated, used by")
        publish = sub.add_parser("publish", help="offer a release (new databases get it)")
        publish.add_argument("version")
        publish.add_argument("--date", help="YYYY-MM-DD: published on that day (default: now)")
        deprecate = sub.add_parser("deprecate", help="mark a published release as deprecated")
        deprecate.add_argument("version")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages))

    def do_list(self, **options: Any) -> None:
        recorded = {r.version: r for r in releases.Release.objects.all()}
        used = dict(
            Database.objects.exclude(name=None)
            .values_list("release")
            .annotate(n=Count("pk"))
            .values_list("release", "n")
        )
        for version in sorted(RELEASES, key=releases.version_key):
            release = recorded.get(version)
            if release is None or release.published_at is None:
                published, state = "-", "not published"
            else:
                published = f"{release.published_at:%Y-%m-%d}"
                state = "deprecated" if release.deprecated else "supported"
                if not release.is_published:
                    state = "to be published"
            count = used.get(version, 0)
            self.stdout.write(f"{version}\t{published}\t{state}\t{count} database(s)")

    def do_publish(self, version: str, date: str | None, **options: Any) -> None:
        release = releases.publish(version, day(date) if date else None)
        self.stdout.write(f"Published {release.version} on {release.published_at:%Y-%m-%d}.")

    def do_deprecate(self, version: str, **options: Any) -> None:
        releases.deprecate(version)
        self.stdout.write(f"{version} is deprecated.")
