from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenantry.operations.sweep import sweep


def moment(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{value!r} is not a date and time: write it as 2026-12-31 or 2026-12-31T18:00."
        ) from None
    return when if timezone.is_aware(when) else when.replace(tzinfo=UTC)


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Run the periodic sweep once (renewals, expiry, reminders, upgrades, backups...), now "
        "or as if at --at."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--at", help="ISO date and time (UTC unless it says): sweep as if then")

    def handle(self, *, at: str | None, **options: Any) -> None:
        when = moment(at) if at else timezone.now()
        sweep(when)
        self.stdout.write(f"Swept as of {when:%Y-%m-%d %H:%M} UTC.")
