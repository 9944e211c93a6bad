from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenantry.accounts.models import ApiKey, User


class Command(BaseCommand):
    # The system checks import every URL and view (~0.4 s): a command a person types answers
    # without them (serve, web, worker and `tenantry check` run them).
    requires_system_checks: list[str] = []
    help = "Manage API keys: `tenantry apikeys create EMAIL --name NAME` prints the key once."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an API key and print it once")
        create.add_argument("email")
        create.add_argument("--name", required=True)

    def handle(self, *, email: str, name: str, **opts: Any) -> None:
        user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
        if user is None:
            raise CommandError(f"There is no account with the email {email}.")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("The key needs a name of 1 to 100 characters.")
        # API keys only work in developer mode, so asking for one turns it on.
        if not user.developer_mode:
            user.developer_mode = True
            user.save(update_fields=["developer_mode"])
        key, raw = ApiKey.objects.issue(user, name)
        self.stdout.write(raw)
