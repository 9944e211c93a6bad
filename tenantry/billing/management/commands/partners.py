from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenantry.accounts.models import User
from tenantry.billing.projects import new_partner_code


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "Partners: add EMAIL (gives the account a partnership code), list."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="the partners and their codes")
        add = sub.add_parser("add", help="make an account a partner")
        add.add_argument("email")

    def handle(self, *, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_list(self, **options: Any) -> None:
        for user in User.objects.exclude(partner_code="").order_by("email"):
            self.stdout.write(f"{user.email}\t{user.partner_code}")

    def do_add(self, email: str, **options: Any) -> None:
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"There is no account {email}.")
        if user.partner_code:
            raise CommandError(f"{user.email} is already a partner ({user.partner_code}).")
        user.partner_code = new_partner_code()
        user.save(update_fields=["partner_code"])
        self.stdout.write(f"{user.email} is a partner: code {user.partner_code}.")
