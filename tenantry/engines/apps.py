from __future__ import annotations

from django.apps import AppConfig


class EnginesConfig(AppConfig):
    name = "tenantry.engines"
    label = "engines"
