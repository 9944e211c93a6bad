"""Custom domains through the API: the owner adds, lists, verifies (against a real DNS server)
and removes them; a user of the database gets 403 and an outsider 404 on every endpoint; each
refusal answers its sentence and code and adds nothing; an add retried with its
Idempotency-Key is replayed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Membership
from tenantry.domains.models import Domain
from tests.conftest import api
from tests.dnsserver import Zone

sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
JSON = "application/json"
DOMAINS = "/api/v1/databases/shop/domains"


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    """A database the owner administers and the member uses."""
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


def add(client: Client, domain: str, key: str = "", path: str = DOMAINS) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(path, {"domain": domain}, content_type=JSON, headers=headers)


def refused(response: Any, status: int, code: str, detail: str) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {"detail": detail, "code": code}


def test_the_api_s_domain_state_is_the_model_s_choices() -> None:
    from tenantry.api import schemas

    assert {m.value for m in schemas.DomainState} == set(Domain.State.values)


@sqlite
def test_the_owner_adds_lists_verifies_and_removes_a_domain(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    client = api(owner)
    response = add(client, " Bücher.Example. ")
    assert response.status_code == 201, response.content
    added = response.json()
    token = Domain.objects.get(name="xn--bcher-kva.example").token
    assert added["name"] == "bücher.example"
    assert added["ascii_name"] == "xn--bcher-kva.example"
    assert (added["state"], added["reason"], added["primary"]) == ("pending", "", False)
    assert added["records"] == {
        "cname": {"name": "xn--bcher-kva.example.", "value": "shop.localhost."},
        "txt": {"name": "_tenantry-challenge.xn--bcher-kva.example.", "value": token},
    }
    assert added["created_at"] and added["verified_at"] is None and added["checked_at"] is None

    assert add(client, "www.example.com").status_code == 201
    listed = client.get(DOMAINS)
    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert [d["ascii_name"] for d in body["data"]] == ["www.example.com", "xn--bcher-kva.example"]
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    assert body["data"][1] == added
    first = client.get(DOMAINS, {"limit": 1}).json()
    assert [d["name"] for d in first["data"]] == ["www.example.com"] and first["has_more"]
    second = client.get(DOMAINS, {"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [d["name"] for d in second["data"]] == ["bücher.example"] and not second["has_more"]

    # Before the record: still pending, and why.
    checked = client.post(f"{DOMAINS}/www.example.com/verify")
    assert checked.status_code == 200, checked.content
    assert (checked.json()["state"], checked.json()["reason"]) == (
        "pending",
        "the name does not exist",
    )
    assert checked.json()["checked_at"] is not None
    dns_server.set("www.example.com", "CNAME", "shop.localhost")
    checked = client.post(f"{DOMAINS}/www.example.com/verify")
    assert checked.status_code == 200, checked.content
    assert (checked.json()["state"], checked.json()["reason"]) == ("verified", "")
    assert checked.json()["verified_at"] is not None
    # By the TXT record, named in Unicode in the path.
    dns_server.set("_tenantry-challenge.xn--bcher-kva.example", "TXT", token)
    checked = client.post(f"{DOMAINS}/bücher.example/verify")
    assert (checked.status_code, checked.json()["state"]) == (200, "verified")

    removed = client.delete(f"{DOMAINS}/www.example.com")
    assert (removed.status_code, removed.content) == (204, b"")
    assert list(shop.domains.values_list("name", flat=True)) == ["xn--bcher-kva.example"]  # type: ignore[attr-defined]
    assert client.delete(f"{DOMAINS}/xn--bcher-kva.example").status_code == 204
    assert client.get(DOMAINS).json()["data"] == []
    details = set(
        Activity.objects.filter(database=shop, kind="domain").values_list("detail", "channel")
    )
    assert ("added bücher.example", "api") in details
    assert ("removed www.example.com", "api") in details


@sqlite
def test_a_domain_not_of_the_database_is_a_404_with_a_sentence(shop: Database, owner: User) -> None:
    client = api(owner)
    other = lifecycle.create("other", by=owner)
    Domain.objects.create(database=other, name="other.example.com")
    for response in [
        client.post(f"{DOMAINS}/other.example.com/verify"),
        client.delete(f"{DOMAINS}/other.example.com"),
    ]:
        refused(response, 404, "not_found", "“other.example.com” is not a domain of “shop”.")
    assert Domain.objects.filter(name="other.example.com").exists()


@sqlite
def test_a_user_of_the_database_gets_403_and_an_outsider_404_on_every_endpoint(
    shop: Database, owner: User, member: User, outsider: User
) -> None:
    Domain.objects.create(database=shop, name="www.example.com")
    calls = [
        lambda c: c.get(DOMAINS),
        lambda c: add(c, "new.example.com"),
        lambda c: c.post(f"{DOMAINS}/www.example.com/verify"),
        lambda c: c.delete(f"{DOMAINS}/www.example.com"),
    ]
    as_member, as_outsider = api(member), api(outsider)
    for call in calls:
        refused(
            call(as_member), 403, "forbidden", "Only the database's administrators can do this."
        )
        refused(call(as_outsider), 404, "not_found", "No database “shop”.")
    assert list(Domain.objects.values_list("name", "state")) == [("www.example.com", "pending")]


@sqlite
def test_refusals_answer_their_sentence_and_code_and_add_nothing(
    shop: Database, owner: User
) -> None:
    client = api(owner)
    refused(
        add(client, "shop.localhost"),
        400,
        "invalid",
        "Names under localhost are Tenantry's own: add a domain of yours.",
    )
    refused(add(client, "192.168.1.10"), 400, "invalid", "An IP address is not a domain name.")
    refused(
        add(client, "*.example.com"),
        400,
        "invalid",
        "A wildcard cannot be added: add each name you want served.",
    )
    refused(add(client, ""), 400, "invalid", "Enter a domain name, such as shop.example.com.")
    other = lifecycle.create("other", by=owner)
    Domain.objects.create(database=other, name="taken.example.com", state=Domain.State.VERIFIED)
    refused(
        add(client, "Taken.Example.com"),
        409,
        "taken",
        "taken.example.com is already a domain of a database here.",
    )
    missing = client.post(DOMAINS, {}, content_type=JSON)
    assert (missing.status_code, missing.json()["code"]) == (422, "invalid_request")
    assert not shop.domains.exists()  # type: ignore[attr-defined]


@sqlite
def test_the_most_domains_a_database_may_have_is_a_409(
    shop: Database, owner: User, settings: Any
) -> None:
    settings.MAX_DOMAINS = 1
    client = api(owner)
    assert add(client, "one.example.com").status_code == 201
    refused(
        add(client, "two.example.com"),
        409,
        "limit",
        "“shop” has 1 domains, the most a database may have: remove one first.",
    )


@sqlite
def test_an_add_retried_with_its_key_answers_the_first_201_and_adds_once(
    shop: Database, owner: User
) -> None:
    client = api(owner)
    first = add(client, "www.example.com", "add-www-1")
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    entries = Activity.objects.count()
    again = add(client, "www.example.com", "add-www-1")
    assert (again.status_code, again.content) == (201, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert shop.domains.count() == 1 and Activity.objects.count() == entries  # type: ignore[attr-defined]
    # Without the key, a retry is another add: refused, the name being taken (by itself).
    refused(
        add(client, "www.example.com"),
        409,
        "taken",
        "www.example.com is already a domain of a database here.",
    )
