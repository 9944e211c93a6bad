"""System checks: an operation kind with no runner fails at start-up."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from tenantry.operations.models import KIND_NAMES, KINDS


@register()
def every_kind_has_a_runner(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [
        Error(
            f"The operation kind “{kind}” has no runner.",
            hint="Register its Kind in operations.models.KINDS from the app that owns the "
            "action, imported in that app's ready() (see databases.apps).",
            id="operations.E001",
        )
        for kind in KIND_NAMES
        if kind not in KINDS
    ]
