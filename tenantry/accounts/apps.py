from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tenantry.accounts"
    label = "accounts"

    def ready(self) -> None:
        from tenantry.accounts import signals  # noqa: F401
