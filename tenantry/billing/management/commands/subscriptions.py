from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.billing.models import Plan, Subscription
from tenantry.databases.models import Database


def find(code: str) -> Subscription:
    found = Subscription.objects.select_related("owner", "plan").filter(code=code.upper()).first()
    if found is None:
        raise CommandError(f"There is no subscription {code}.")
    return found


def database(name: str) -> Database:
    found = Database.objects.filter(name=name).first()
    if found is None:
        raise CommandError(f"There is no database named {name}.")
    return found


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "Subscriptions: list, show CODE, add EMAIL --plan, link CODE NAME, unlink CODE NAME."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every subscription, or one account's")
        listing.add_argument("--account", help="only this account email's")
        show = sub.add_parser("show", help="a subscription: details, databases, invoices")
        show.add_argument("code")
        add = sub.add_parser("add", help="subscribe an account to a plan (first invoice issued)")
        add.add_argument("email")
        add.add_argument("--plan", required=True)
        add.add_argument("--period", default="month", choices=["month", "year"])
        add.add_argument("--users", type=int, default=1)
        for verb in ("link", "unlink"):
            action = sub.add_parser(verb, help=f"{verb} a database")
            action.add_argument("code")
            action.add_argument("name")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def do_list(self, account: str | None, **options: Any) -> None:
        found = Subscription.objects.select_related("owner", "plan")
        if account:
            found = found.filter(owner__email__iexact=account)
        for s in found:
            self.stdout.write(
                f"{s.code}\t{s.owner.email}\t{s.plan.name}\t{s.users} user(s)\t"
                f"{s.get_state_display()}\trenews {s.renews_at:%Y-%m-%d}"
            )

    def do_show(self, code: str, **options: Any) -> None:
        s = find(code)
        ending = "ends" if s.cancel_at_period_end else "renews"
        lines = [
            f"Subscription {s.code} of {s.owner.email}: {s.get_state_display()}",
            f"Plan {s.plan.name}, {s.get_period_display().lower()}, {s.users} user(s); "
            f"{ending} on {s.renews_at:%Y-%m-%d}",
            "Databases: " + (", ".join(d.name or "" for d in s.databases.all()) or "none"),  # type: ignore[attr-defined]
            "Invoices:",
        ]
        for invoice in s.invoices.all():  # type: ignore[attr-defined]
            paid = f"paid {invoice.paid_at:%Y-%m-%d}" if invoice.paid_at else "unpaid"
            lines.append(
                f"  {invoice.number}\t{invoice.issued_at:%Y-%m-%d}\t{invoice.amount}\t{paid}"
            )
        self.stdout.write("\n".join(lines))

    def do_add(self, email: str, plan: str, period: str, users: int, **options: Any) -> None:
        owner = User.objects.filter(email__iexact=email).first()
        if owner is None:
            raise CommandError(f"There is no account {email}.")
        found = Plan.objects.filter(name=plan).first()
        if found is None:
            raise CommandError(f"There is no plan {plan} (`tenantry plans list`).")
        s = subscriptions.subscribe(owner, found, period=period, users=users, by=None)
        self.stdout.write(f"Subscription {s.code} added; its first invoice is issued.")

    def do_link(self, code: str, name: str, **options: Any) -> None:
        subscriptions.link(find(code), database(name), by=None)
        self.stdout.write(f"{name} is linked to {code.upper()}.")

    def do_unlink(self, code: str, name: str, **options: Any) -> None:
        subscriptions.unlink(find(code), database(name), by=None)
        self.stdout.write(f"{name} is unlinked from {code.upper()}.")
