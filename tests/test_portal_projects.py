"""Partners' trial projects in the portal: the partnership code on the account page; New trial
project in the manager and its usage bars (as the limits count, with a flat number of queries);
a project's page, the partner's only, with its staging databases (new, refresh), its storage and
the link to the client's subscription; each refusal's sentence as a form error that changes
nothing; CSRF on every post."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tenantry.accounts.models import User
from tenantry.billing import projects, quotas, subscriptions
from tenantry.billing.models import Plan, Project, Subscription
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.operations.models import Operation
from tests.conftest import client_for, database_records, make_account
from tests.helpers import run_pending, subscribed

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)

CODE = "P-1234ABCD"


@pytest.fixture
def partner(db: None) -> User:
    account = make_account("partner@example.com")
    account.partner_code = CODE
    account.save(update_fields=["partner_code"])
    return account


@pytest.fixture
def customer(db: None) -> User:
    """The partner's client."""
    return make_account("client@example.com")


@pytest.fixture
def plan(db: None) -> Plan:
    return Plan.objects.create(
        name="Standard", price_month=Decimal("10"), price_year=Decimal("100"),
        storage_bytes=10 * 1024**3, max_databases=3,
    )  # fmt: skip


@pytest.fixture
def project(engine_kind: str, partner: User, customer: User) -> Project:
    """The partner's trial project “acme”, measured; the client administers its production."""
    found = projects.start_project("acme", by=partner)
    assert found.production is not None
    quotas.measure(found.production)
    Membership.objects.create(database=found.production, user=customer, role=Membership.Role.ADMIN)
    return found


def production(project: Project) -> Database:
    found = project.production
    assert found is not None
    found.refresh_from_db()
    return found


def staging(project: Project, name: str, partner: User) -> Database:
    lifecycle.start_duplicate(production(project), name, by=partner)
    run_pending()
    return Database.objects.get(name=name)


def text(response: object) -> str:
    """The page as a person reads its words: entities decoded, spaces and line breaks as one."""
    return " ".join(html.unescape(response.content.decode()).split())  # type: ignore[attr-defined]


def errors(response: object) -> str:
    """The form errors of a page: where a refusal's sentence shows."""
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', text(response))
    return " ".join(re.sub(r"<[^>]+>", "", e).strip() for e in found)


def size(count: int) -> str:
    """As text() reads filesizeformat's: "1.0 GB" (no non-breaking space)."""
    return " ".join(filesizeformat(count).split())


def row(user: User, name: str) -> str:
    page = text(client_for(user).get("/databases/"))
    found = page[page.index(f'<tr id="db-{name}">') :]
    return found[: found.index("</tr>")]


# The account page


def test_the_account_page_shows_the_partnership_code(
    engine_kind: str, partner: User, outsider: User
) -> None:
    page = text(client_for(partner).get("/account/"))
    assert f"Your partnership code is <strong>{CODE}</strong>." in page
    assert 'id="partnership"' not in text(client_for(outsider).get("/account/"))


# The manager: New trial project


def test_the_manager_offers_new_trial_project_to_partners_only(
    engine_kind: str, partner: User, outsider: User
) -> None:
    assert 'id="new-project"' in text(client_for(partner).get("/databases/"))
    assert 'id="new-project"' not in text(client_for(outsider).get("/databases/"))


def test_a_partner_starts_a_trial_project_from_the_manager(engine_kind: str, partner: User) -> None:
    response = client_for(partner).post("/databases/", {"project-name": "acme"}, follow=True)
    project = Project.objects.get(partner=partner)
    assert response.redirect_chain == [(f"/projects/{project.pk}/", 302)]
    database = production(project)
    assert (database.name, database.project) == ("acme", project)
    assert database.role_of(partner) == "admin"
    ready = f"Your trial project is ready: its production database is at {database.url}."
    assert ready in text(response)
    assert f'<a href="/projects/{project.pk}/" class="muted">Trial project</a>' in row(
        partner, "acme"
    )


def test_each_refusal_to_start_a_project_is_a_form_error_and_changes_nothing(
    engine_kind: str, partner: User, outsider: User
) -> None:
    response = client_for(outsider).post("/databases/", {"project-name": "acme"})
    assert response.status_code == 200
    refusal = "Trial projects are for partners: this account has no partnership code."
    assert refusal in errors(response)
    lifecycle.create("shop", by=partner)
    refusals = [
        ("shop", "The name “shop” is already taken. Choose another one."),
        ("admin", "The name “admin” is reserved. Choose another one."),
        ("Acme", "Database names are lowercase: this one would be “acme”."),
        ("a", "A database name has 3 to 63 characters."),
    ]
    for name, sentence in refusals:
        response = client_for(partner).post("/databases/", {"project-name": name})
        assert response.status_code == 200
        assert sentence in errors(response), (name, errors(response))
        assert 'id="new-project"' in text(response)
    assert not Project.objects.exists()
    assert list(Database.objects.values_list("name", flat=True)) == ["shop"]


# The manager: usage bars


def test_the_manager_shows_the_usage_of_a_limited_database(
    project: Project, partner: User, customer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    used, limit = quotas.usage(production(project))
    assert limit == quotas.PROJECT_BYTES and 0 < used < limit
    bar = f'<progress max="{limit}" value="{used}" aria-label="Storage used">'
    figures = f"<span>{size(used)} of 1.0 GB</span>"
    for who in (partner, customer):
        found = row(who, "acme")
        assert 'class="usage"' in found and bar in found and figures in found
    # The project's page, for its partner only.
    assert f'href="/projects/{project.pk}/"' in row(partner, "acme")
    assert "/projects/" not in row(customer, "acme")
    # A trial of its own has no limit, so no bar.
    lifecycle.create("shop", by=partner)
    assert "usage" not in row(partner, "shop")
    # Past 80 %: the warning's style.
    monkeypatch.setattr(quotas, "PROJECT_BYTES", used * 100 // 85)
    assert 'class="usage warn"' in row(partner, "acme")


def test_the_usage_bars_count_what_the_limits_count(
    project: Project, partner: User, customer: User, plan: Plan
) -> None:
    acme = production(project)
    first = staging(project, "acme-staging", partner)
    shop = lifecycle.create("shop", by=customer)
    other = lifecycle.create("other", by=partner)
    # Sizes that tell each sum from the others.
    for i, database in enumerate([acme, first, shop, other]):
        Database.objects.filter(pk=database.pk).update(size_bytes=1000 * 10**i)

    def each() -> list[Database]:
        return list(
            Database.objects.select_related(
                "subscription__plan", "project__production__subscription__plan"
            ).exclude(name=None)
        )

    def agrees() -> dict[str, tuple[int, int]]:
        databases = each()
        found = quotas.usages(databases)
        for database in databases:
            used, limit = quotas.usage(database)
            if limit is None:
                assert database.pk not in found, database
            else:
                assert found[database.pk] == (used, limit), database
        return {d.name or "": found[d.pk] for d in databases if d.pk in found}

    assert agrees() == {"acme": (11000, 2**30), "acme-staging": (11000, 2**30)}
    # The client's subscription pays for shop and for production: staging comes along.
    subscription = subscriptions.subscribe(customer, plan, by=customer)
    subscriptions.link(subscription, shop, by=customer)
    subscriptions.link(subscription, acme, by=partner)
    plan_bytes = plan.storage_bytes
    assert agrees() == {
        "acme": (111000, plan_bytes),
        "acme-staging": (111000, plan_bytes),
        "shop": (111000, plan_bytes),  # the subscription's whole: production's staging too
    }


def test_the_manager_makes_the_same_queries_with_projects_and_subscriptions(
    engine_kind: str, partner: User, plan: Plan
) -> None:
    client = client_for(partner)
    client.get("/databases/")  # the first request records the session
    subscription = subscriptions.subscribe(partner, plan, by=partner)

    def records(count: int, prefix: str) -> None:
        """Databases each in a project of their own; every other one paid for."""
        database_records(partner, count, prefix)
        for i, database in enumerate(Database.objects.filter(name__startswith=f"{prefix}-")):
            database.project = Project.objects.create(partner=partner, production=database)
            database.subscription = subscription if i % 2 else None
            database.save(update_fields=["project", "subscription"])

    records(5, "few")
    with CaptureQueriesContext(connection) as few:
        assert client.get("/databases/").status_code == 200
    records(40, "many")
    with CaptureQueriesContext(connection) as many:
        page = text(client.get("/databases/"))
    assert page.count('<div class="usage') == 45
    assert page.count(">Trial project</a>") == 45
    assert len(many.captured_queries) == len(few.captured_queries)


# A project's page: who sees it


def test_the_project_page_is_the_partners_only(
    project: Project, partner: User, customer: User, outsider: User, plan: Plan
) -> None:
    path = f"/projects/{project.pk}/"
    assert client_for(partner).get(path).status_code == 200
    # The client administers its production: not enough.
    for someone in (customer, outsider):
        assert client_for(someone).get(path).status_code == 404
    assert client_for(partner).get(f"/projects/{project.pk + 1}/").status_code == 404
    first = staging(project, "acme-staging", partner)
    subscription = subscriptions.subscribe(customer, plan, by=customer)
    posts = [
        {"action": "staging", "name": "acme-staging-2"},
        {"action": "refresh", "database": "acme-staging"},
        {"action": "link", "code": subscription.code},
    ]
    for someone in (customer, outsider):
        for data in posts:
            assert client_for(someone).post(path, data).status_code == 404
    assert not Database.objects.filter(name="acme-staging-2").exists()
    assert not Operation.objects.filter(kind="refresh").exists()
    assert Database.objects.get(pk=first.pk).physical_name == first.physical_name
    assert production(project).subscription is None


def test_the_pages_need_a_signed_in_account(project: Project) -> None:
    for path in (f"/projects/{project.pk}/", "/account/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    response = Client().post("/databases/", {"project-name": "acme-2"})
    assert response["Location"].startswith("/accounts/login/")
    assert Project.objects.count() == 1


def test_the_project_page_shows_production_staging_and_storage(
    project: Project, partner: User
) -> None:
    staging(project, "acme-staging", partner)
    page = text(client_for(partner).get(f"/projects/{project.pk}/"))
    acme = production(project)
    assert "Trial project “acme”" in page and acme.url in page
    assert f"Partnership code</dt><dd>{CODE}" in page
    assert 'id="staging-acme-staging"' in page
    assert 'aria-label="Refresh acme-staging from production">Refresh from production' in page
    used, limit = quotas.usage(acme)
    assert f"{size(used)} of {size(limit)}" in page
    assert 'id="link"' in page and 'name="code"' in page
    # Each of the project's databases leads to it from the manager.
    assert f'href="/projects/{project.pk}/"' in row(partner, "acme-staging")


# Staging databases


def test_a_partner_makes_staging_databases_two_at_most(project: Project, partner: User) -> None:
    client = client_for(partner)
    path = f"/projects/{project.pk}/"
    assert 'value="acme-staging"' in text(client.get(path))  # the name suggested

    def make(name: str) -> Operation:
        response = client.post(path, {"action": "staging", "name": name})
        operation = Operation.objects.get(kind="duplicate", target__name=name)
        assert response["Location"] == f"/operations/{operation.pk}/"
        run_pending()
        copy = Database.objects.get(name=name)
        assert (copy.project, copy.expires_at, copy.is_test_copy) == (project, None, True)
        return operation

    operation = make("acme-staging")
    page = text(client.get(f"/operations/{operation.pk}/"))
    copy = Database.objects.get(name="acme-staging")
    assert f'The copy is ready at <span class="url"><a href="{copy.url}">' in page
    assert f'href="/projects/{project.pk}/">Back to the trial project' in page
    # A name refused by its rules, while there is room for a copy.
    refusals = [
        ("acme-staging", "The name “acme-staging” is already taken. Choose another one."),
        ("Acme-3", "Database names are lowercase: this one would be “acme-3”."),
    ]
    for name, sentence in refusals:
        response = client.post(path, {"action": "staging", "name": name})
        assert response.status_code == 200
        assert sentence in errors(response), (name, errors(response))
    make("acme-staging-2")
    response = client.post(path, {"action": "staging", "name": "acme-staging-3"})
    assert (
        "A trial project has 2 staging databases at most: delete one first, or refresh it from "
        "production." in errors(response)
    )
    assert project.databases.exclude(name=None).count() == 3  # type: ignore[attr-defined]


def test_a_staging_database_past_the_storage_is_refused(
    project: Project, partner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    used, _ = quotas.usage(production(project))
    monkeypatch.setattr(quotas, "PROJECT_BYTES", used * 3 // 2)
    response = client_for(partner).post(
        f"/projects/{project.pk}/", {"action": "staging", "name": "acme-staging"}
    )
    sentence = errors(response)
    assert sentence.startswith(f"This staging database would need {size(used)} more: ")
    assert f"the trial project “acme” uses {size(used)} of its " in sentence
    assert "Free some space, or raise the limit with a subscription's plan." in sentence
    assert not Database.objects.filter(name="acme-staging").exists()


def test_refresh_from_production_runs_and_reports(project: Project, partner: User) -> None:
    first = staging(project, "acme-staging", partner)
    client = client_for(partner)
    response = client.post(
        f"/projects/{project.pk}/", {"action": "refresh", "database": "acme-staging"}
    )
    operation = Operation.objects.get(kind="refresh")
    assert response["Location"] == f"/operations/{operation.pk}/"
    assert operation.database == first
    page = text(client.get(f"/projects/{project.pk}/"))  # under way: no second refresh offered
    assert f'href="/operations/{operation.pk}/" class="badge busy">In progress…' in page
    assert "Refresh acme-staging from production" not in page
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    page = text(client.get(f"/operations/{operation.pk}/"))
    assert "Refresh “acme-staging”" in page
    done = "“acme-staging” has production's data again, neutralized, at "
    assert f'{done}<span class="url"><a href="{first.url}">' in page
    assert Database.objects.get(pk=first.pk).physical_name != first.physical_name


def test_each_refusal_to_refresh_is_a_form_error_and_changes_nothing(
    project: Project, partner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = staging(project, "acme-staging", partner)
    lifecycle.create("shop", by=partner)
    client = client_for(partner)
    path = f"/projects/{project.pk}/"
    refusals = [
        ("acme", "“acme” is not a staging database of a trial project."),
        ("shop", "“shop” is not a database of this project."),
        ("nowhere", "“nowhere” is not a database of this project."),
    ]
    for name, sentence in refusals:
        response = client.post(path, {"action": "refresh", "database": name})
        assert response.status_code == 200
        assert sentence in errors(response), (name, errors(response))
    # Busy: an operation already runs on it.
    client.post(path, {"action": "refresh", "database": "acme-staging"})
    response = client.post(path, {"action": "refresh", "database": "acme-staging"})
    assert "Another operation is already running on “acme-staging”" in errors(response)
    Operation.objects.all().delete()
    # Past the storage.
    monkeypatch.setattr(quotas, "PROJECT_BYTES", 1)
    response = client.post(path, {"action": "refresh", "database": "acme-staging"})
    assert "This refresh would need " in errors(response)
    assert "the trial project “acme” uses " in errors(response)
    assert not Operation.objects.exists()
    assert Database.objects.get(pk=first.pk).physical_name == first.physical_name
    assert client.post(path, {"action": "pay"}).status_code == 400


def test_a_partner_no_longer_administering_production_copies_nothing_of_it(
    project: Project, partner: User
) -> None:
    staging(project, "acme-staging", partner)
    Membership.objects.filter(database=project.production, user=partner).update(
        role=Membership.Role.USER
    )
    client = client_for(partner)
    path = f"/projects/{project.pk}/"
    # The project is no longer his to see, nor to act on.
    assert client.get(path).status_code == 404
    for data in (
        {"action": "staging", "name": "acme-staging-2"},
        {"action": "refresh", "database": "acme-staging"},
    ):
        assert client.post(path, data).status_code == 404
    # Production's administrator again, but no longer the staging database's.
    Membership.objects.filter(user=partner).update(role=Membership.Role.ADMIN)
    Membership.objects.filter(database__name="acme-staging", user=partner).update(
        role=Membership.Role.USER
    )
    response = client.post(path, {"action": "refresh", "database": "acme-staging"})
    assert "Only administrators of “acme-staging” refresh it." in errors(response)
    assert not Operation.objects.filter(state="queued").exists()
    assert not Database.objects.filter(name="acme-staging-2").exists()


# The client's subscription


def test_the_partner_links_production_with_the_clients_code(
    project: Project, partner: User, customer: User, plan: Plan
) -> None:
    subscription = subscriptions.subscribe(customer, plan, by=customer)
    client = client_for(partner)
    path = f"/projects/{project.pk}/"
    typed = f"  {subscription.code.lower()} "  # as read aloud and typed
    response = client.post(path, {"action": "link", "code": typed}, follow=True)
    assert response.redirect_chain == [(path, 302)]
    page = text(response)
    assert f"“acme” is linked to {subscription.code}: the project now counts against" in page
    assert production(project).subscription == subscription
    assert f"<dt>Subscription</dt><dd>{subscription.code}</dd>" in page
    assert 'id="link"' not in page and "Partnership code" not in page
    assert "of 10.0 GB" in page  # the plan's storage now
    # The manager: the client's code, without a link to a page that is the client's.
    found = row(partner, "acme")
    assert subscription.code in found and f"/subscriptions/{subscription.code}/" not in found
    assert "of 10.0 GB" in found
    assert f'href="/subscriptions/{subscription.code}/"' in row(customer, "acme")


def test_each_refusal_to_link_is_a_form_error_and_changes_nothing(
    project: Project, partner: User, customer: User, outsider: User, plan: Plan
) -> None:
    theirs = subscriptions.subscribe(outsider, plan, by=outsider)
    ended = subscriptions.subscribe(customer, plan, by=customer)
    Subscription.objects.filter(pk=ended.pk).update(state=Subscription.State.CANCELLED)
    client = client_for(partner)
    path = f"/projects/{project.pk}/"
    refusals = [
        # An unknown code and another account's read alike: codes cannot be guessed here.
        (
            "M0000-NONE",
            "The subscription M0000-NONE cannot be linked to “acme”: check the code, and that "
            "its owner is an administrator of “acme”.",
        ),
        ("", "This field is required."),
        (
            theirs.code,
            f"The subscription {theirs.code} cannot be linked to “acme”: check the code, and "
            "that its owner is an administrator of “acme”.",
        ),
        (ended.code, f"The subscription {ended.code} is cancelled: it cannot take a database."),
    ]
    for code, sentence in refusals:
        response = client.post(path, {"action": "link", "code": code})
        assert response.status_code == 200
        assert sentence in errors(response), (code, errors(response))
    assert production(project).subscription is None
    # Production no longer the partner's to administer: the project page is gone for him.
    Membership.objects.filter(database=project.production, user=partner).update(
        role=Membership.Role.USER
    )
    live = subscriptions.subscribe(customer, plan, by=customer)
    assert client.post(path, {"action": "link", "code": live.code}).status_code == 404
    assert production(project).subscription is None


def test_a_project_paid_for_offers_more_staging_databases(
    project: Project, partner: User, customer: User
) -> None:
    staging(project, "acme-staging", partner)
    staging(project, "acme-staging-2", partner)
    subscribed(production(project), customer)
    response = client_for(partner).post(
        f"/projects/{project.pk}/", {"action": "staging", "name": "acme-staging-3"}
    )
    assert response.status_code == 302
    run_pending()
    assert Database.objects.get(name="acme-staging-3").project == project


# CSRF


def test_every_post_needs_the_csrf_token(
    project: Project, partner: User, customer: User, plan: Plan
) -> None:
    staging(project, "acme-staging", partner)
    subscription = subscriptions.subscribe(customer, plan, by=customer)
    client = Client(enforce_csrf_checks=True)
    client.force_login(partner)
    path = f"/projects/{project.pk}/"
    posts = [
        ("/databases/", {"project-name": "beta"}),
        (path, {"action": "staging", "name": "acme-staging-2"}),
        (path, {"action": "refresh", "database": "acme-staging"}),
        (path, {"action": "link", "code": subscription.code}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, (url, data)
    assert Project.objects.count() == 1 and not Operation.objects.filter(state="queued").exists()
    assert production(project).subscription is None
    # The page's own forms carry it.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(client.get(path)))
    assert token is not None
    data = {"csrfmiddlewaretoken": token.group(1), "action": "link", "code": subscription.code}
    assert client.post(path, data).status_code == 302
    assert production(project).subscription == subscription
