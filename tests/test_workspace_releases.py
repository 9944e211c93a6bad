"""The workspace's contacts pages at every release of the workspace app, each reached with the
models of its release: a contact's company typed as a name (none at 1.0, free text at 1.1, a
row of the companies table since 2.0, with its email domain since 2.1), the Companies page
from 2.0, and the 2.0 and 2.1 migrations of the contacts a 1.1 database has.

Requests go through the gateway (`<name>.localhost`), as a browser's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db.backends.signals import connection_created
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.releases.models import Release, publish, version_key
from tenantry.workspace import releases, tenant
from tenantry.workspace.routers import TENANT_PREFIX
from tests.helpers import signed_in

# The company field a person sees at every release that has companies.
COMPANY_FIELD = '<input type="text" name="company" maxlength="200" id="id_company">'
COMPANIES_LINK = '<a href="/companies/">Companies</a>'


@pytest.fixture
def acme(release: str, engine_kind: str, owner: User) -> Database:
    """A new database at `release`: the latest published release, newer ones not yet."""
    publish(release)
    newer = [v for v in releases.RELEASES if version_key(v) > version_key(release)]
    Release.objects.filter(version__in=newer).update(published_at=None)
    database = lifecycle.create("acme", by=owner)
    assert database.release == release
    return database


def add(client: Client, name: str, email: str = "", company: str = "") -> None:
    data = {"name": name, "email": email, "company": company}
    response = client.post("/contacts/", data)
    assert response.status_code == 302, response.context["form"].errors


def pk_of(database: Database, name: str) -> int:
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        return Contact.objects.using(db).get(name=name).pk  # type: ignore[no-any-return]


@contextmanager
def tenant_queries() -> Iterator[list[str]]:
    """The SQL sent to tenant databases meanwhile. Each request opens and closes its own
    connection, which CaptureQueriesContext cannot follow: count on every new one instead."""
    sent: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        sent.append(sql)
        return execute(sql, *args)

    def opened(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias.startswith(TENANT_PREFIX):
            connection.execute_wrappers.append(record)

    connection_created.connect(opened)
    try:
        yield sent
    finally:
        connection_created.disconnect(opened)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("release", ["1.1", "2.0", "2.1"])
def test_a_contact_s_company_is_typed_seen_in_the_list_and_edited(
    acme: Database, owner: User
) -> None:
    client = signed_in(acme, owner)
    assert COMPANY_FIELD in client.get("/contacts/").content.decode()  # the same at each
    add(client, "Ada Lovelace", "ada@analytical.example", " Analytical Engines ")
    add(client, "Grace Hopper", "grace@navy.example", "Analytical Engines")
    add(client, "Edsger Dijkstra", "edsger@eindhoven.example")
    page = client.get("/contacts/").content.decode()
    assert "<th>Company</th>" in page
    assert page.count("<td>Analytical Engines</td>") == 2  # the name, trimmed

    ada = pk_of(acme, "Ada Lovelace")
    page = client.get(f"/contacts/{ada}/").content.decode()
    assert 'name="company" value="Analytical Engines"' in page
    edit = {"name": "Ada King", "email": "ada@analytical.example", "company": "Difference Engines"}
    assert client.post(f"/contacts/{ada}/", edit).status_code == 302
    page = client.get("/contacts/").content.decode()
    assert "<td>Difference Engines</td>" in page and "<td>Analytical Engines</td>" in page
    page = client.get(f"/contacts/{ada}/").content.decode()
    assert 'name="company" value="Difference Engines"' in page


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("release", ["1.0"])
def test_at_1_0_a_contact_has_no_company(acme: Database, owner: User) -> None:
    client = signed_in(acme, owner)
    add(client, "Ada Lovelace", "ada@analytical.example", "Analytical Engines")  # not asked
    page = client.get("/contacts/").content.decode()
    assert "Ada Lovelace" in page
    assert 'name="company"' not in page and "<th>Company</th>" not in page
    page = client.get(f"/contacts/{pk_of(acme, 'Ada Lovelace')}/").content.decode()
    assert "Ada Lovelace" in page and 'name="company"' not in page


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("release", ["1.0", "1.1", "2.0", "2.1"])
def test_the_companies_page_is_there_from_2_0(acme: Database, owner: User, release: str) -> None:
    client = signed_in(acme, owner)
    has_companies = version_key(release) >= (2, 0)
    for path in ("/", "/contacts/", "/attachments/"):
        assert (COMPANIES_LINK in client.get(path).content.decode()) == has_companies, path
    assert client.get("/companies/").status_code == (200 if has_companies else 404)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("release", ["2.0", "2.1"])
def test_the_companies_page_lists_each_company_with_its_contacts(
    acme: Database, owner: User, release: str
) -> None:
    client = signed_in(acme, owner)
    assert "No companies yet." in client.get("/companies/").content.decode()
    add(client, "Ada Lovelace", "ada@analytical.example", "Analytical Engines")
    add(client, "Grace Hopper", "grace@navy.example", "Analytical Engines")
    add(client, "Edsger Dijkstra", "edsger@eindhoven.example", "Eindhoven")
    add(client, "Alan Turing", "alan@bletchley.example")
    page = client.get("/companies/").content.decode()
    if release == "2.0":
        assert "<th>Domain</th>" not in page
        assert "<tr><td>Analytical Engines</td><td>2</td></tr>" in page
        assert "<tr><td>Eindhoven</td><td>1</td></tr>" in page
    else:  # a new company's domain is its first contact's
        assert "<th>Domain</th>" in page
        assert "<tr><td>Analytical Engines</td><td>analytical.example</td><td>2</td></tr>" in page
        assert "<tr><td>Eindhoven</td><td>eindhoven.example</td><td>1</td></tr>" in page
    assert page.index("Analytical Engines") < page.index("Eindhoven")


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("release", ["1.1", "2.1"])
def test_the_contacts_list_reads_their_companies_in_the_same_query(
    acme: Database, owner: User
) -> None:
    client = signed_in(acme, owner)
    add(client, "Ada Lovelace", company="Analytical Engines")
    with tenant_queries() as one:
        assert client.get("/contacts/").status_code == 200
    for name in ("Grace Hopper", "Edsger Dijkstra", "Alan Turing"):
        add(client, name, company=f"{name}'s company")
    with tenant_queries() as four:
        page = client.get("/contacts/").content.decode()
    assert "<td>Alan Turing&#x27;s company</td>" in page
    assert len(four) == len(one)


# The 2.0 and 2.1 migrations of a 1.1 database's contacts, in SQL on each engine.
@pytest.mark.parametrize("release", ["1.1"])
def test_the_migrations_make_one_company_per_trimmed_name_with_the_domain_most_share(
    acme: Database,
) -> None:
    contacts = [
        ("Ada Lovelace", " Acme ", "ada@acme.example"),
        ("Grace Hopper", "Acme", "grace@ACME.example"),
        ("Edsger Dijkstra", "Other", "edsger@mail.example"),
        ("Alan Turing", "Other", "alan@other.example"),
        ("Barbara Liskov", "Other", "barbara@other.example"),
        ("Donald Knuth", "", "don@nowhere.example"),
    ]
    with tenant.using(acme) as db:
        Contact = releases.model("1.1", "Contact")
        for name, company, email in contacts:
            Contact.objects.using(db).create(name=name, company=company, email=email)
        call_command("migrate", "workspace", "0004_release_2_1", database=db, verbosity=0)
        Contact, Company = releases.model("2.1", "Contact"), releases.model("2.1", "Company")
        linked = dict(Contact.objects.using(db).values_list("name", "company__name"))
        companies = list(Company.objects.using(db).values_list("name", "domain"))
    assert companies == [("Acme", "acme.example"), ("Other", "other.example")]
    assert linked == {
        "Ada Lovelace": "Acme",
        "Grace Hopper": "Acme",
        "Edsger Dijkstra": "Other",
        "Alan Turing": "Other",
        "Barbara Liskov": "Other",
        "Donald Knuth": None,
    }
