from __future__ import annotations

from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "tenantry.databases"
    label = "databases"

    def ready(self) -> None:
        # lifecycle and members are imported for what they register: the operation kinds, and
        # the receiver that deactivates a deleted account's users in its databases.
        from tenantry.accounts.models import DELETION_CHECKS
        from tenantry.databases import lifecycle, members  # noqa: F401
        from tenantry.databases.models import sole_admin_refusal

        DELETION_CHECKS.append(sole_admin_refusal)
