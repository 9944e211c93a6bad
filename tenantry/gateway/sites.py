"""Which database a host name reaches: a lookup cached in the shared cache.

Every save or deletion of a database record forgets its old and new names (see
databases.models.Database.save), so a rename or a delete is seen at once by every process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.cache import cache

if TYPE_CHECKING:
    from tenantry.databases.models import Database

TIMEOUT = 60 * 60
_MISSING = "missing"


def _key(name: str) -> str:
    return f"tenantry:site:{name}"


def lookup(name: str) -> Database | None:
    """The active database named `name`, with its server, or None."""
    from tenantry.databases.models import Database

    found = cache.get(_key(name))
    if found is None:
        found = (
            Database.objects.select_related("server")
            .filter(name=name, status=Database.Status.ACTIVE)
            .first()
        ) or _MISSING
        cache.set(_key(name), found, TIMEOUT)
    return None if found == _MISSING else found


def forget(*names: str | None) -> None:
    cache.delete_many([_key(name) for name in names if name])
