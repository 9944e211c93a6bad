from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenantry.engines.fleet import sqlite_engine
from tenantry.releases import models as releases

from ._server import add_web_arguments, at_least_one, run_web, start_worker_threads


class Command(BaseCommand):
    help = "Migrate, then run the web server and task workers: the one-command start."

    def add_arguments(self, parser: Any) -> None:
        add_web_arguments(parser)
        # Several, so that a long operation (a large restore) holds back no one else's.
        parser.add_argument(
            "--task-workers", type=at_least_one, default=3, help="task worker threads"
        )

    def handle(
        self, *, bind: tuple[str, int], workers: int, task_workers: int, **options: Any
    ) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        # The first database is then made as fast as the next ones.
        sqlite_engine().prepare_template(releases.latest())
        start_worker_threads(task_workers)
        run_web(bind, workers)
