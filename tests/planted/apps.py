from __future__ import annotations

from django.apps import AppConfig


class PlantedConfig(AppConfig):
    name = "tests.planted"
    label = "planted"

    def ready(self) -> None:
        from tenantry.workspace.releases import RELEASES
        from tests.planted import PLANTED

        RELEASES.update(PLANTED)
