from __future__ import annotations

import sys
from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from tenantry.accounts.models import User


class Command(BaseCommand):
    # The system checks import every URL and view (~0.4 s): a command a person types answers
    # without them (serve, web, worker and `tenantry check` run them).
    requires_system_checks: list[str] = []
    help = "Manage accounts: `tenantry accounts create EMAIL --password-stdin [--verified]`."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an account")
        create.add_argument("email")
        create.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        create.add_argument("--verified", action="store_true", help="mark the email as verified")

    def handle(self, *, email: str, password_stdin: bool, verified: bool, **opts: Any) -> None:
        email = email.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"{email!r} is not a valid email address.")
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"An account with the email {email} already exists.")
        password = sys.stdin.readline().rstrip("\n") if password_stdin else None
        if password_stdin and not password:
            raise CommandError("No password was given on standard input.")
        if password and "\x00" in password:
            # The sign-in form refuses it: the account could never sign in with it.
            raise CommandError("The password holds a NUL character (U+0000): no password may.")
        if password:
            try:
                validate_password(password, User(email=email))
            except ValidationError as e:
                raise CommandError(" ".join(e.messages))
        with transaction.atomic():
            user = User.objects.create_user(email, password)
            EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
        self.stdout.write(f"Created the account {email}.")
