from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ._server import add_web_arguments, run_web


class Command(BaseCommand):
    help = "Run the web server alone (run `tenantry migrate` and workers separately)."

    def add_arguments(self, parser: Any) -> None:
        add_web_arguments(parser)

    def handle(self, *, bind: tuple[str, int], workers: int, **options: Any) -> None:
        run_web(bind, workers)
