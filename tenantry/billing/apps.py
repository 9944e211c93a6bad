from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "tenantry.billing"
    label = "billing"
