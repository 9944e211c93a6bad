"""The operator's pages for plans, subscriptions and invoices (Django's admin, for staff
accounts: `tenantry createsuperuser`). Changes go through the billing verbs where there is
one (paying an invoice)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from tenantry.billing import subscriptions
from tenantry.billing.models import Invoice, Plan, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin[Plan]):
    list_display = ("name", "price_month", "price_year", "storage", "max_databases", "grows")
    search_fields = ("name",)

    @admin.display(description="Storage", ordering="storage_bytes")
    def storage(self, plan: Plan) -> str:
        return filesizeformat(plan.storage_bytes)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin[Subscription]):
    list_display = ("code", "owner", "plan", "period", "users", "state", "renews_at")
    list_filter = ("state", "period", "plan")
    search_fields = ("code", "owner__email")
    # Its code and owner are its identity; its state follows its invoices (the sweep).
    readonly_fields = ("code", "owner", "state", "created_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its databases would be left paid for by nothing, forever: cancel it


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin[Invoice]):
    list_display = ("number", "subscription", "issued_at", "users", "amount", "paid_at")
    list_filter = (("paid_at", admin.EmptyFieldListFilter),)
    search_fields = ("subscription__code", "subscription__owner__email")
    actions = ["pay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the renewals issue them

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an invoice issued stays as it was; paying is the action below

    @admin.action(description="Mark the selected invoices paid")
    def pay(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        for invoice in queryset.select_related("subscription"):
            try:
                subscriptions.pay(invoice)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.WARNING)
            else:
                self.message_user(request, f"{invoice.number} is paid.")
