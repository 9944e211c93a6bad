"""The gateway's cache of database names: plain values that survive a change of the models,
forgotten by every kind of change to a record (save, delete, update)."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.gateway import sites

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"], indirect=True)
KEY = "tenantry:site:shop"


def answers(name: str) -> int:
    return Client(HTTP_HOST=f"{name}.localhost").get("/login/").status_code


def test_the_cache_holds_plain_values_not_a_model(engine_kind: str, owner: User) -> None:
    shop = lifecycle.create("shop", by=owner)
    assert answers("shop") == 200
    cached = caches["gateway"].get(KEY)
    assert isinstance(cached["database"], dict) and cached["database"]["name"] == "shop"
    assert not any(hasattr(v, "_meta") for v in cached["database"].values())
    assert (cached["server"] is None) == (shop.server_id is None)
    assert sites.lookup("shop").physical_name == shop.physical_name  # type: ignore[union-attr]


def test_an_entry_written_by_another_version_of_the_models_still_serves(
    engine_kind: str, owner: User
) -> None:
    shop = lifecycle.create("shop", by=owner)
    assert answers("shop") == 200
    cached = caches["gateway"].get(KEY)
    del cached["database"]["size_bytes"]  # a field added since it was written
    cached["database"]["plan_id"] = 7  # a field removed since
    caches["gateway"].set(KEY, cached)
    found = sites.lookup("shop")
    assert found is not None and found.pk == shop.pk and found.size_bytes == 0
    assert answers("shop") == 200


def test_an_update_anywhere_is_seen_at_once(engine_kind: str, owner: User) -> None:
    shop = lifecycle.create("shop", by=owner)
    assert answers("shop") == 200
    Database.objects.filter(pk=shop.pk).update(name="shop-two")  # no save(), no post_save
    assert answers("shop") == 404
    assert answers("shop-two") == 200
    Database.objects.filter(pk=shop.pk).update(status=Database.Status.DELETING)
    assert answers("shop-two") == 404
