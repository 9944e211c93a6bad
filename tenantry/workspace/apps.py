from __future__ import annotations

from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "tenantry.workspace"
    label = "workspace"
    verbose_name = "Workspace (the app inside each database)"
