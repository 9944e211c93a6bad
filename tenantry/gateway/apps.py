from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "tenantry.gateway"
    label = "gateway"

    def ready(self) -> None:
        from tenantry.gateway import sites  # noqa: F401  (its receivers forget changed names)
