from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenantry.accounts.models import User


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Tenantry's staff (the support desk at /desk/ and /admin/): add EMAIL, remove EMAIL, list."
    )

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="the staff accounts")
        sub.add_parser("add", help="make an account staff").add_argument("email")
        sub.add_parser("remove", help="an account is staff no more").add_argument("email")

    def handle(self, *, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_list(self, **options: Any) -> None:
        for email in (
            User.objects.filter(is_staff=True).order_by("email").values_list("email", flat=True)
        ):
            self.stdout.write(email)

    def _account(self, email: str) -> User:
        # Stored lowercased (Python's lower(): SQLite's iexact folds ASCII letters only).
        user = User.objects.filter(email=email.strip().lower()).first()
        if user is None:
            raise CommandError(f"There is no account {email}: sign up first.")
        return user

    def do_add(self, email: str, **options: Any) -> None:
        user = self._account(email)
        if user.is_staff:
            raise CommandError(f"{user.email} is already staff.")
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        self.stdout.write(
            f"{user.email} is staff: the support desk is at /desk/ (a recent sign-in is asked)."
        )

    def do_remove(self, email: str, **options: Any) -> None:
        user = self._account(email)
        if not user.is_staff:
            raise CommandError(f"{user.email} is not staff.")
        user.is_staff = user.is_superuser = False
        user.save(update_fields=["is_staff", "is_superuser"])
        self.stdout.write(f"{user.email} is no longer staff.")
