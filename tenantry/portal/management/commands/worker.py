from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ._server import make_worker, start_housekeeping


class Command(BaseCommand):
    help = "Run a task worker alone: run as many as needed, on any machine."

    def handle(self, **options: Any) -> None:
        start_housekeeping()
        worker = make_worker()
        worker.configure_signals()
        worker.run()
