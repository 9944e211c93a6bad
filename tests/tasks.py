"""A task for tests that check a worker really runs what is enqueued."""

from __future__ import annotations

from pathlib import Path

from django.tasks import task


@task
def touch(path: str) -> None:
    Path(path).write_text("done")
