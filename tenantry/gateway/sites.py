"""Which database a host name reaches: a lookup cached in the gateway's own shared cache.

Every save or deletion of a database record forgets its old and new names (see
databases.models.Database.save), so a rename or a delete is seen at once by every process.
Only databases found are kept: anyone can ask for names that do not exist, and a miss costs
one indexed query, no more than reading the cache, so caching misses would only let a flood
of made-up hosts push the real databases out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import caches
from django.db import transaction

if TYPE_CHECKING:
    from tenantry.databases.models import Database

TIMEOUT = 60 * 60


def _key(name: str) -> str:
    return f"tenantry:site:{name}"


def lookup(name: str) -> Database | None:
    """The active database named `name`, with its server, or None."""
    from tenantry.databases.models import Database

    cache = caches["gateway"]
    found: Database | None = cache.get(_key(name))
    if found is None:
        found = (
            Database.objects.select_related("server")
            .filter(name=name, status=Database.Status.ACTIVE)
            .first()
        )
        if found is not None:
            cache.set(_key(name), found, TIMEOUT)
    return found


def forget(*names: str | None) -> None:
    keys = [_key(name) for name in names if name]
    caches["gateway"].delete_many(keys)
    # Again once the change is committed: a cache outside the control database (Redis) may
    # have been given the old record by a request in between.
    transaction.on_commit(lambda: caches["gateway"].delete_many(keys))
