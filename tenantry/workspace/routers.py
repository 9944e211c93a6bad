from __future__ import annotations

from typing import Any

TENANT_PREFIX = "tenant:"


class TenantRouter:
    """Workspace models go only into tenant databases; the others only into the control one."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return (app_label == "workspace") == db.startswith(TENANT_PREFIX)
