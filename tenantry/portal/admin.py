"""Django's admin (plans, subscriptions, invoices) as a staff page like the support desk:
staff who signed in again within ACCOUNT_REAUTHENTICATION_TIMEOUT."""

from __future__ import annotations

from typing import Any

from allauth.account.decorators import reauthentication_required
from django.contrib import admin


class StaffSite(admin.AdminSite):
    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        return super().admin_view(reauthentication_required(view), cacheable)
