"""Which engine holds a database, and where new databases go."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import cache
from typing import Protocol

from tenantry.engines.base import Engine, EngineError
from tenantry.engines.models import Server
from tenantry.engines.postgresql import PostgreSQLEngine
from tenantry.engines.sqlite import SQLiteEngine

logger = logging.getLogger(__name__)


class Placed(Protocol):
    """Where a database is (a databases.Database: the engines know nothing more of it)."""

    server_id: int | None
    server: Server | None


@cache
def sqlite_engine() -> SQLiteEngine:
    return SQLiteEngine()


@cache
def _postgresql_engine(name: str, url: str) -> PostgreSQLEngine:
    return PostgreSQLEngine(url, name)


def server_engine(server: Server) -> PostgreSQLEngine:
    return _postgresql_engine(server.name, server.url)


def remove_abandoned_builds(now: datetime) -> None:
    """Template builds more than an hour old, on every engine: their process died."""
    before = (now - timedelta(hours=1)).timestamp()
    sqlite_engine().remove_abandoned_builds(before)
    for server in Server.objects.order_by("name"):
        try:
            server_engine(server).remove_abandoned_builds(before)
        except EngineError:  # one server down: the others are swept all the same
            logger.exception("Template builds on the server %s were not swept", server.name)


def engine_for(database: Placed) -> Engine:
    if database.server is None:
        return sqlite_engine()
    return server_engine(database.server)


def place() -> Server | None:
    """The server with the most room for a new database; None (SQLite) when there is none.

    Room is the server's capacity less the recorded sizes of its databases.
    """
    from django.db.models import Sum
    from django.db.models.functions import Coalesce

    servers = Server.objects.filter(draining=False).annotate(
        used=Coalesce(Sum("databases__size_bytes"), 0)
    )
    return max(servers, key=lambda s: s.capacity_bytes - s.used, default=None)  # type: ignore[attr-defined]
