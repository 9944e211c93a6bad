from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "tenantry.portal"
    label = "portal"
