"""Running an operation from the CLI, with its progress on the terminal."""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import CommandError
from django.db import connection

from tenantry.operations.models import Operation
from tenantry.operations.tasks import run_operation


def run_in_terminal(operation: Operation, out: Any) -> Operation:
    """Run the operation here and now (a worker that picks it up later finds it taken),
    printing each step; raise CommandError with the reason if it fails."""

    def run() -> None:
        try:
            run_operation.call(operation.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    last = ""
    while True:
        thread.join(timeout=0.2)
        operation.refresh_from_db()
        line = f"[{operation.progress:3d}%] {operation.step or 'Waiting'}"
        if line != last and operation.state != Operation.State.FAILED:
            out.write(line + "\n")
            out.flush()
            last = line
        # A worker may have taken the operation first: then follow it to its end. One that
        # failed and waits for its server to undo what it began is left to the workers.
        if not thread.is_alive() and (not operation.is_active or operation.error):
            break
    if operation.state != Operation.State.DONE:
        raise CommandError(operation.error or "The operation did not finish.")
    return operation
