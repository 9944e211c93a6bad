from __future__ import annotations

from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "tenantry.operations"
    label = "operations"

    def ready(self) -> None:
        from tenantry.operations import (
            checks,  # noqa: F401  (registers them)
            due,  # noqa: F401  (new databases' due work)
        )
