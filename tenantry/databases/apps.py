from __future__ import annotations

from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "tenantry.databases"
    label = "databases"

    def ready(self) -> None:
        from tenantry.accounts.models import DELETION_CHECKS
        from tenantry.databases import lifecycle  # noqa: F401  (registers the operation kinds)
        from tenantry.databases.models import sole_admin_refusal

        DELETION_CHECKS.append(sole_admin_refusal)
