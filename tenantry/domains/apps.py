from __future__ import annotations

from django.apps import AppConfig


class DomainsConfig(AppConfig):
    name = "tenantry.domains"
    label = "domains"
