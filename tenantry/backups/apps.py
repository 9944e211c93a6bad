from __future__ import annotations

from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "tenantry.backups"
    label = "backups"

    def ready(self) -> None:
        from tenantry.backups import restore  # noqa: F401  (registers the operation kind)
