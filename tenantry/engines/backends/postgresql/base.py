"""Django's PostgreSQL backend for tenant databases: sessions kept between requests (see
pool.py), and patient while a database is being copied.

A duplicate closes its source to new sessions for the moment of the copy (a template must
have none). A request arriving then waits for the copy to end instead of failing.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg import IsolationLevel

from tenantry.engines.backends.postgresql import pool

# Longer than any copy of a database we accept to serve meanwhile.
WAIT_SECONDS = 120


class DatabaseWrapper(base.DatabaseWrapper):
    _parking = False

    def pool_key(self) -> pool.Key:
        """Which sessions may serve this wrapper: those of the same alias (server and
        database) and the same address and user (a server's URL may change)."""
        s = self.settings_dict
        return (self.alias, str(s["HOST"]), str(s["PORT"]), str(s["USER"]), str(s["NAME"]))

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        kept = pool.take(self.pool_key())
        if kept is not None:
            # As super() sets it without OPTIONS["isolation_level"] (tenants have none).
            self.isolation_level = IsolationLevel.READ_COMMITTED
            return kept
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                return super().get_new_connection(conn_params)
            except psycopg.OperationalError as error:
                closed = "not currently accepting connections" in str(error)
                if not closed or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def park(self) -> None:
        """Close, keeping the session for a later request to this database when it may be
        kept (pool.park says when)."""
        self._parking = True
        try:
            self.close()
        finally:
            self._parking = False

    def _close(self) -> None:
        parked = self._parking and self.connection is not None
        if parked and pool.park(self.pool_key(), self.connection):
            return  # close() forgets it: it is the pool's now
        super()._close()  # type: ignore[misc]  # not in django-stubs
