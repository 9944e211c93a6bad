"""The Domains page of a database: its administrators add a domain, read the record to add,
verify it against a real DNS server, make it primary and remove it; others cannot."""

from __future__ import annotations

import pytest
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.domains.models import Domain
from tests.conftest import client_for
from tests.dnsserver import Zone

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
PATH = "/databases/shop/domains/"


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


def text(response: object) -> str:
    return response.content.decode()  # type: ignore[attr-defined, no-any-return]


def test_administrators_add_verify_make_primary_and_remove_a_domain(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    client = client_for(owner)
    assert 'href="/databases/shop/domains/">Domains</a>' in text(client.get("/databases/"))
    added = client.post(PATH, {"action": "add", "domain": "Bücher.example"}, follow=True)
    page = text(added)
    assert "bücher.example is added: add its DNS record." in page
    domain = Domain.objects.get()
    assert "xn--bcher-kva.example. CNAME shop.localhost." in page
    assert f'_tenantry-challenge.xn--bcher-kva.example. TXT "{domain.token}"' in page

    checked = text(client.post(PATH, {"action": "verify", "domain": domain.name}, follow=True))
    assert "bücher.example is not verified: the name does not exist." in checked
    dns_server.set("xn--bcher-kva.example", "CNAME", "shop.localhost")
    checked = text(client.post(PATH, {"action": "verify", "domain": domain.name}, follow=True))
    assert "bücher.example is verified." in checked
    client.post(PATH, {"action": "primary", "domain": domain.name})
    shop.refresh_from_db()
    assert shop.primary_domain == "xn--bcher-kva.example"

    refused = text(client.post(PATH, {"action": "add", "domain": "x.localhost"}))
    assert "Names under localhost are Tenantry&#x27;s own" in refused
    client.post(PATH, {"action": "remove", "domain": domain.name})
    shop.refresh_from_db()
    assert not Domain.objects.exists() and shop.primary_domain == ""


def test_only_administrators_reach_the_page_and_its_forms_need_the_csrf_token(
    shop: Database, owner: User, member: User, outsider: User
) -> None:
    assert client_for(member).get(PATH).status_code == 403
    assert client_for(outsider).get(PATH).status_code == 404
    for user in (member, outsider):
        client_for(user).post(PATH, {"action": "add", "domain": "shop.example.com"})
    assert not Domain.objects.exists()
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(owner)
    assert forged.post(PATH, {"action": "add", "domain": "shop.example.com"}).status_code == 403
    assert not Domain.objects.exists()
    assert client_for(owner).post(PATH, {"action": "verify", "domain": "nope"}).status_code == 404
