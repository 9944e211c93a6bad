from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "tenantry.billing"
    label = "billing"

    def ready(self) -> None:
        from tenantry.accounts.models import DELETION_CHECKS
        from tenantry.billing import projects  # noqa: F401  (registers the operation kind)
        from tenantry.billing.subscriptions import owner_refusal

        DELETION_CHECKS.append(owner_refusal)
