"""Names typed are the names made: the portal shows a lowercase name before making it, and
no channel cuts a long name to fit."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tests.conftest import api, client_for

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
RULE = "A database name has 3 to 63 characters."


def test_the_portal_shows_the_lowercase_name_before_making_it(
    engine_kind: str, owner: User
) -> None:
    client = client_for(owner)
    page = client.post("/databases/", {"name": "  ACME-Big "}).content.decode()
    assert "this one would be “acme-big”" in page
    assert 'value="acme-big"' in page  # the field now holds the name it would make
    assert not Database.objects.exists()

    assert client.post("/databases/", {"name": "acme-big"}).status_code == 302
    assert list(Database.objects.values_list("name", flat=True)) == ["acme-big"]


@pytest.mark.parametrize("length", [64, 300])
def test_a_long_name_is_refused_with_the_rule_never_cut(
    engine_kind: str, owner: User, length: int
) -> None:
    name = "a" * length
    page = client_for(owner).post("/databases/", {"name": name}).content.decode()
    assert RULE in page
    assert 'maxlength="63"' not in page  # the browser cuts nothing either
    response = api(owner).post("/api/v1/databases", {"name": name}, content_type="application/json")
    assert response.status_code == 400 and RULE in response.json()["detail"]
    with pytest.raises(CommandError, match=RULE):
        call_command("db", "create", name, "--owner", owner.email)
    assert not Database.objects.exists()


def test_the_api_and_the_cli_make_the_lowercase_name_and_say_it(
    engine_kind: str, owner: User
) -> None:
    response = api(owner).post(
        "/api/v1/databases", {"name": "ACME"}, content_type="application/json"
    )
    assert response.status_code == 201 and response.json()["name"] == "acme"
    out = io.StringIO()
    call_command("db", "create", " Shop-Two ", "--owner", owner.email, stdout=out)
    assert out.getvalue().startswith("Created shop-two at ")
    call_command("db", "rename", "SHOP-TWO", "Shop-Three", stdout=out)
    assert "Renamed shop-two to shop-three." in out.getvalue()
    assert set(Database.objects.values_list("name", flat=True)) == {"acme", "shop-three"}


def test_a_rename_to_a_capitalized_name_is_shown_first(engine_kind: str, owner: User) -> None:
    lifecycle.create("acme", by=owner)
    client = client_for(owner)
    page = client.post("/databases/acme/rename/", {"name": "Acme-Corp"}).content.decode()
    assert "this one would be “acme-corp”" in page
    assert Database.objects.get().name == "acme"
