"""The control database's cache for security state, which traffic must never evict."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.db import DatabaseCache
from django.db import connections


class KeepingCache(DatabaseCache):
    """A database cache that never evicts a live entry: past MAX_ENTRIES it only removes the
    expired ones. Django's own culls by key order, so anything that adds keys (a flood of
    unknown hosts, of sign-in attempts for random logins) would wipe rate-limit counters and
    used-code markers."""

    def _cull(self, db: str, cursor: Any, now: Any, num: int) -> None:
        ops = connections[db].ops
        table = ops.quote_name(self._table)  # type: ignore[attr-defined]
        expires = ops.quote_name("expires")
        cursor.execute(
            f"DELETE FROM {table} WHERE {expires} < %s",  # noqa: S608 (quoted names)
            [ops.adapt_datetimefield_value(now)],
        )
