from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenantry.engines.fleet import sqlite_engine
from tenantry.workspace.releases import LATEST

from ._server import add_web_arguments, run_web, start_worker_thread


class Command(BaseCommand):
    help = "Migrate, then run the web server and a task worker: the one-command start."

    def add_arguments(self, parser: Any) -> None:
        add_web_arguments(parser)

    def handle(self, *, bind: tuple[str, int], workers: int, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        # The first database is then made as fast as the next ones.
        sqlite_engine().prepare_template(LATEST)
        start_worker_thread()
        run_web(bind, workers)
