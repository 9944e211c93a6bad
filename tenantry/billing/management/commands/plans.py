from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.template.defaultfilters import filesizeformat

from tenantry.billing.models import Plan

UNITS = {"KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


MAX_PRICE = Decimal("99999999.99")  # the field's 10 digits
MAX_BYTES = 2**62
MAX_DATABASES = 100_000


def amount(value: str) -> Decimal:
    try:
        price = Decimal(value)
        if not price.is_finite() or not 0 <= price <= MAX_PRICE:
            raise InvalidOperation
        if price != price.quantize(Decimal("0.01")):
            raise InvalidOperation
    except InvalidOperation:
        raise CommandError(
            f"{value!r} is not an amount: write it like 12.50 (at most {MAX_PRICE})."
        ) from None
    return price


def size(value: str) -> int:
    """10GB, 512MB or a number of bytes."""
    text, unit = value.strip().upper(), 1
    for suffix, factor in UNITS.items():
        if text.endswith(suffix):
            text, unit = text[: -len(suffix)], factor
            break
    try:
        number = Decimal(text)
        if not number.is_finite() or not 0 < number * unit <= MAX_BYTES:
            raise InvalidOperation
    except InvalidOperation:
        raise CommandError(f"{value!r} is not a size: write it like 10GB or 512MB.") from None
    return int(number * unit)


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "The plans subscriptions are on: add NAME ..., list."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="every plan with its prices and limits")
        add = sub.add_parser("add", help="a new plan")
        add.add_argument("name")
        add.add_argument("--month", required=True, help="price a user, a month (e.g. 12.50)")
        add.add_argument("--year", required=True, help="price a user, a year (e.g. 120)")
        add.add_argument("--storage", required=True, help="databases and files, e.g. 10GB")
        add.add_argument("--databases", required=True, type=int, help="how many databases")
        add.add_argument("--grows", action="store_true", help="inviting past the users adds users")

    def handle(self, *, action: str, **options: Any) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_list(self, **options: Any) -> None:
        for plan in Plan.objects.all():
            grows = "\tgrows" if plan.grows else ""
            self.stdout.write(
                f"{plan.name}\t{plan.price_month}/user/month\t{plan.price_year}/user/year\t"
                f"{filesizeformat(plan.storage_bytes)}\t{plan.max_databases} database(s){grows}"
            )

    def do_add(
        self, name: str, month: str, year: str, storage: str, databases: int, grows: bool,
        **options: Any,
    ) -> None:  # fmt: skip
        if not 1 <= databases <= MAX_DATABASES:
            raise CommandError(f"A plan takes at least one database, at most {MAX_DATABASES}.")
        try:
            with transaction.atomic():
                Plan.objects.create(
                    name=name, price_month=amount(month), price_year=amount(year),
                    storage_bytes=size(storage), max_databases=databases, grows=grows,
                )  # fmt: skip
        except IntegrityError:
            raise CommandError(f"There is already a plan named {name}.") from None
        self.stdout.write(f"Plan {name} added.")
