from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenantry.billing import subscriptions
from tenantry.billing.models import Invoice


def number(value: str) -> int:
    digits = value.upper().removeprefix("INV-")
    if not digits.isascii() or not digits.isdigit():
        raise CommandError(f"{value!r} is not an invoice number (INV-000042, or 42).")
    return int(digits)


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "Invoices: list [--unpaid], pay ID (no card is processed: the operator records it)."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="invoices, newest first")
        listing.add_argument("--unpaid", action="store_true")
        pay = sub.add_parser("pay", help="mark an invoice paid")
        pay.add_argument("id")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def do_list(self, unpaid: bool, **options: Any) -> None:
        invoices = Invoice.objects.select_related("subscription__owner")
        if unpaid:
            invoices = invoices.filter(paid_at=None)
        for invoice in invoices:
            paid = f"paid {invoice.paid_at:%Y-%m-%d}" if invoice.paid_at else "unpaid"
            self.stdout.write(
                f"{invoice.number}\t{invoice.subscription.code}\t"
                f"{invoice.subscription.owner.email}\t{invoice.issued_at:%Y-%m-%d}\t"
                f"{invoice.amount}\t{paid}"
            )

    def do_pay(self, id: str, **options: Any) -> None:
        invoice = Invoice.objects.filter(pk=number(id)).first()
        if invoice is None:
            raise CommandError(f"There is no invoice {id}.")
        subscriptions.pay(invoice)
        self.stdout.write(
            f"{invoice.number} ({invoice.amount}) is paid. The subscription "
            f"{invoice.subscription.code} is {invoice.subscription.get_state_display().lower()}."
        )
