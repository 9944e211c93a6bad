"""Django's PostgreSQL backend for tenant databases, patient while a database is being copied.

A duplicate closes its source to new sessions for the moment of the copy (a template must
have none). A request arriving then waits for the copy to end instead of failing.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db.backends.postgresql import base

# Longer than any copy of a database we accept to serve meanwhile.
WAIT_SECONDS = 120


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                return super().get_new_connection(conn_params)
            except psycopg.OperationalError as error:
                closed = "not currently accepting connections" in str(error)
                if not closed or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
