from __future__ import annotations

from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "tenantry.releases"
    label = "releases"

    def ready(self) -> None:
        from tenantry.releases import upgrade  # noqa: F401  (registers the operation kind)
