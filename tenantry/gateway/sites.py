"""Which database a host name reaches: a lookup cached in the gateway's own shared cache.

The cache holds plain values (the record's and its server's fields), not pickled model
instances: a deploy that changes the models reads the old entries as well as it can and
never fails on them. A save, a deletion or an update() of a database record forgets its old
and new names (the receivers below), so a rename or a delete is seen at once by every process.
Only databases found are kept: anyone can ask for names that do not exist, and a miss costs
one indexed query, no more than reading the cache, so caching misses would only let a flood
of made-up hosts push the real databases out.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenantry.databases.models import Database, updated
from tenantry.engines.models import Server

TIMEOUT = 60 * 60


def _key(name: str) -> str:
    return f"tenantry:site:{name}"


def _values(instance: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def _instance[M: models.Model](model: type[M], values: dict[str, Any]) -> M:
    """The model instance of cached values: fields it no longer has are left out, new ones
    take their defaults."""
    known = {f.attname for f in model._meta.concrete_fields}
    instance = model(**{k: v for k, v in values.items() if k in known})
    instance._state.adding = False
    return instance


def lookup(name: str) -> Database | None:
    """The active database named `name`, with its server, or None."""
    cache = caches["gateway"]
    cached = cache.get(_key(name))
    if isinstance(cached, dict) and "database" in cached:
        database = _instance(Database, cached["database"])
        if cached.get("server"):
            database.server = _instance(Server, cached["server"])
        return database
    found = (
        Database.objects.select_related("server")
        .filter(name=name, status=Database.Status.ACTIVE)
        .first()
    )
    if found is not None:
        server = _values(found.server) if found.server else None
        cache.set(_key(name), {"database": _values(found), "server": server}, TIMEOUT)
    return found


def forget(*names: str | None) -> None:
    keys = [_key(name) for name in names if name]
    if not keys:
        return
    caches["gateway"].delete_many(keys)
    # Again once the change is committed: a cache outside the control database (Redis) may
    # have been given the old record by a request in between.
    transaction.on_commit(lambda: caches["gateway"].delete_many(keys))


@receiver(post_save, sender=Database)
@receiver(post_delete, sender=Database)
def on_change(sender: Any, instance: Database, **kwargs: Any) -> None:
    forget(instance.loaded_name, instance.name)
    instance.loaded_name = instance.name


@receiver(updated, sender=Database)
def on_update(sender: Any, names: list[str | None], **kwargs: Any) -> None:
    forget(*names)
