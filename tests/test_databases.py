"""The database lifecycle through the portal and the API, on both engines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.engines import base, filestore
from tenantry.engines.fleet import engine_for, server_engine, sqlite_engine
from tenantry.engines.models import Server
from tenantry.operations.models import Operation
from tenantry.operations.sweep import sweep
from tenantry.releases.models import latest
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tests.conftest import PASSWORD, api, client_for, database_records, reauthenticate
from tests.helpers import run_pending, subscribed
from tests.postgres import free_port


@pytest.fixture
def acme(engine_kind: str, owner: User, member: User) -> Database:
    database = lifecycle.create("acme", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    return database


def test_create_from_the_portal_makes_a_real_database_with_its_admin(
    engine_kind: str, owner: User
) -> None:
    response = client_for(owner).post("/databases/", {"name": "my-shop"})
    assert response.status_code == 302
    database = Database.objects.get(name="my-shop")
    assert database.engine == engine_kind
    assert database.release == latest() and database.status == "active"
    assert engine_for(database).exists(database.physical_name)
    with tenant.using(database) as db:
        admin = ws.User.objects.using(db).get()
        assert (admin.login, admin.is_admin, admin.account_id) == (owner.email, True, owner.pk)
        assert ws.Settings.objects.using(db).get().uuid == database.uuid
    assert database.role_of(owner) == "admin"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("My_Shop", "lowercase letters, digits and hyphens"),
        ("-shop", "cannot start or end with a hyphen"),
        ("shop-", "cannot start or end with a hyphen"),
        ("xn--80ak6aa92e", "hyphens in third and fourth place"),  # a look-alike of "apple"
        ("ab--cd", "hyphens in third and fourth place"),
        ("www", "is reserved"),
        ("acme", "already taken"),
    ],
)
def test_each_bad_name_gets_its_own_message(
    acme: Database, owner: User, name: str, message: str
) -> None:
    response = client_for(owner).post("/databases/", {"name": name})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Database.objects.count() == 1


def test_the_manager_lists_databases_with_role_status_and_size(
    acme: Database, owner: User, member: User, outsider: User
) -> None:
    page = client_for(owner).get("/databases/").content.decode()
    assert "acme" in page and acme.url in page and "Administrator" in page
    assert 'href="/databases/acme/delete/"' in page
    member_page = client_for(member).get("/databases/").content.decode()
    assert "acme" in member_page and "Manage" not in member_page
    assert "No databases yet" in client_for(outsider).get("/databases/").content.decode()


def test_rename_moves_the_name_and_url_but_no_data(acme: Database, owner: User) -> None:
    physical = acme.physical_name
    response = client_for(owner).post("/databases/acme/rename/", {"name": "acme-corp"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.name == "acme-corp" and acme.physical_name == physical
    assert "acme-corp." in acme.url
    assert engine_for(acme).exists(physical)
    assert not Database.objects.filter(name="acme").exists()


def test_duplicate_for_testing_is_an_exact_neutralized_copy_with_a_new_uuid(
    acme: Database, owner: User
) -> None:
    Contact = releases.model(acme.release, "Contact")
    with tenant.using(acme) as db:
        Contact.objects.using(db).create(name="Ada")
        ws.Mail.objects.using(db).create(to="x@example.com", subject="Hi", body="...")
        ws.PaymentProvider.objects.using(db).update(state="enabled")
        ws.DeliveryCarrier.objects.using(db).update(production=True)
    sha, _ = filestore.store(acme.physical_name, [b"invoice pdf"])

    response = client_for(owner).post(
        "/databases/acme/duplicate/", {"name": "acme-test", "for_testing": "on"}
    )
    assert response.status_code == 302
    operation = Operation.objects.get()
    assert response["Location"] == f"/operations/{operation.pk}/"
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "done", operation.error

    copy = Database.objects.get(name="acme-test")
    assert copy.status == "active" and copy.source == acme and copy.is_test_copy
    assert copy.uuid != acme.uuid
    assert copy.expires_at and copy.expires_at - timezone.now() > timedelta(days=14)
    assert filestore.path(copy.physical_name, sha).read_bytes() == b"invoice pdf"
    with tenant.using(copy) as db:
        assert list(Contact.objects.using(db).values_list("name", flat=True)) == ["Ada"]
        assert ws.Settings.objects.using(db).get().uuid == copy.uuid
        assert not ws.MailServer.objects.using(db).get().active
        assert set(ws.Mail.objects.using(db).values_list("state", flat=True)) == {"held"}
        assert not ws.PaymentProvider.objects.using(db).exclude(state="disabled").exists()
        assert not ws.DeliveryCarrier.objects.using(db).filter(production=True).exists()
        assert not ws.ScheduledJob.objects.using(db).filter(active=True).exists()
    # The original keeps talking to the world.
    with tenant.using(acme) as db:
        assert ws.MailServer.objects.using(db).get().active
        assert ws.PaymentProvider.objects.using(db).filter(state="enabled").exists()
    assert copy.role_of(owner) == "admin"
    page = client_for(owner).get(f"/operations/{operation.pk}/").content.decode()
    assert "Done." in page and copy.url in page


def test_duplicate_without_testing_keeps_the_copy_live(acme: Database, owner: User) -> None:
    client_for(owner).post("/databases/acme/duplicate/", {"name": "acme-live"})
    run_pending()
    copy = Database.objects.get(name="acme-live")
    with tenant.using(copy) as db:
        assert ws.MailServer.objects.using(db).get().active
        assert ws.ScheduledJob.objects.using(db).filter(active=True).exists()


def test_at_most_five_live_copies(acme: Database, owner: User) -> None:
    client = client_for(owner)
    for i in range(5):
        client.post("/databases/acme/duplicate/", {"name": f"acme-{i}", "for_testing": "on"})
        run_pending()
    response = client.post("/databases/acme/duplicate/", {"name": "acme-6", "for_testing": "on"})
    assert "already has 5 live copies" in response.content.decode()
    assert not Database.objects.filter(name="acme-6").exists()


def test_one_operation_at_a_time_per_database(acme: Database, owner: User) -> None:
    client = client_for(owner)
    client.post("/databases/acme/duplicate/", {"name": "acme-one"})
    response = client.post("/databases/acme/duplicate/", {"name": "acme-two"})
    assert "Another operation is already running" in response.content.decode()
    assert not Database.objects.filter(name="acme-two").exists()
    run_pending()


def test_delete_asks_for_the_password_and_the_name_and_frees_it_at_once(
    acme: Database, owner: User
) -> None:
    client = client_for(owner)
    page = client.get("/databases/acme/delete/").content.decode()
    assert "instant and permanent, for all its users" in page
    # Signed in is not enough: the password again, then the confirmation goes on.
    response = client.post("/databases/acme/delete/", {"confirm": "acme-typo"})
    assert response["Location"].startswith("/accounts/reauthenticate/")
    response = client.post(response["Location"], {"password": PASSWORD})
    page = response.content.decode()
    assert "This is not the name of the database." in page
    assert 'action="/databases/acme/delete/"' in page  # the form posts back to its page

    physical = acme.physical_name
    client.post("/databases/acme/delete/", {"confirm": "acme"})
    # The name is free before the worker has even started.
    assert not Database.objects.filter(name="acme").exists()
    client.post("/databases/", {"name": "acme"})
    assert Database.objects.filter(name="acme").exists()
    run_pending()
    assert not engine_for(acme).exists(physical)
    assert not Database.objects.filter(physical_name=physical).exists()


def test_delete_is_refused_while_subscribed(acme: Database, owner: User) -> None:
    client = client_for(owner)
    reauthenticate(client)
    code = subscribed(acme, owner).code
    response = client.post("/databases/acme/delete/", {"confirm": "acme"})
    assert f"linked to the subscription {code}" in response.content.decode()
    assert not Operation.objects.exists()


EXPIRED = "“acme” has expired: it can only be downloaded or backed up."


def test_an_expired_database_can_only_be_downloaded_or_backed_up(
    acme: Database, owner: User, member: User
) -> None:
    from tenantry.backups import store
    from tenantry.backups.models import Backup
    from tenantry.databases import members

    backup = store.make(acme, Backup.Kind.DAILY)
    [pending] = members.invite(acme, ["new@example.com"], "user", by=owner)
    Database.objects.filter(pk=acme.pk).update(expires_at=timezone.now() - timedelta(days=1))
    key = api(owner)
    json = {"content_type": "application/json"}
    refused = [
        key.patch("/api/v1/databases/acme", {"name": "acme-two"}, **json),
        key.post("/api/v1/databases/acme/duplicate", {"name": "acme-copy"}, **json),
        key.delete("/api/v1/databases/acme"),
        key.post("/api/v1/databases/acme/users", {"emails": ["x@example.com"]}, **json),
        key.delete(f"/api/v1/databases/acme/users/{member.email}"),
        key.delete("/api/v1/databases/acme/users/new@example.com"),
        key.post("/api/v1/databases/acme/restore", {"backup": backup.pk, "replace": "true"}),
    ]
    for response in refused:
        assert response.status_code == 400, response.content
        assert response.json()["detail"].startswith(EXPIRED)
    portal = client_for(owner)
    reauthenticate(portal)
    posts = [
        ("/databases/acme/rename/", {"name": "acme-two"}),
        ("/databases/acme/delete/", {"confirm": "acme"}),
        ("/databases/acme/users/", {"action": "invite", "emails": "y@example.com", "role": "user"}),
        ("/databases/acme/users/", {"action": "remove", "email": [member.email]}),
        ("/databases/acme/users/", {"action": "admin", "email": [member.email]}),
        ("/databases/acme/users/", {"action": "resend", "invitation": pending.pk}),
        ("/databases/acme/users/", {"action": "cancel", "invitation": pending.pk}),
        ("/databases/acme/restore/", {"backup": backup.pk, "into": "over", "identity": "moved"}),
    ]
    for path, data in posts:
        assert EXPIRED in portal.post(path, data, follow=True).content.decode(), path
    # Nothing changed.
    assert Database.objects.get(pk=acme.pk).name == "acme"
    assert Membership.objects.get(user=member).role == "user"
    assert acme.invitations.get().pk == pending.pk  # type: ignore[attr-defined]
    assert not Operation.objects.exists()
    assert Database.objects.count() == 1
    # What remains: its download and its backups.
    assert key.get("/api/v1/databases/acme/download").status_code == 200
    assert key.get("/api/v1/databases/acme/backups").json()["data"][0]["id"] == backup.pk
    assert portal.get("/databases/acme/backups/").status_code == 200


def test_the_sweep_deletes_expired_copies_and_warns_before(
    acme: Database, owner: User, mailoutbox: list
) -> None:  # type: ignore[type-arg]
    client_for(owner).post("/databases/acme/duplicate/", {"name": "acme-old", "for_testing": "on"})
    run_pending()
    copy = Database.objects.get(name="acme-old")
    assert copy.expires_at is not None
    sweep(now=copy.expires_at - timedelta(days=2))
    assert mailoutbox[-1].to == [owner.email] and "acme-old" in mailoutbox[-1].subject
    sweep(now=copy.expires_at + timedelta(minutes=1))
    run_pending()
    assert not Database.objects.filter(pk=copy.pk).exists()
    assert not engine_for(acme).exists(copy.physical_name)
    assert Database.objects.filter(pk=acme.pk).exists()


def test_the_sweep_removes_template_builds_whose_process_died(
    acme: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(acme)
    engine.drop(engine.template_name("1.0"))  # made by an earlier test on the same server
    engine._ready_templates.discard("1.0")  # which this process then remembers as ready

    def killed(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process died while migrating")

    monkeypatch.setattr(base.MigrationExecutor, "migrate", killed)
    with pytest.raises(RuntimeError):
        engine.prepare_template("1.0")
    (build,) = [name for name in engine._templates() if "_1_0_" in name]
    sweep(timezone.now() + timedelta(minutes=30))  # it may still be under way
    assert engine.exists(build)
    down = Server(name="a-down")  # swept first, and cannot be reached: the others still are
    down.url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    down.save()
    # Builds are looked for once an hour (operations.sweep.hourly): the pass an hour after the
    # last look, the build being an hour old.
    sweep(timezone.now() + timedelta(minutes=91))
    assert not engine.exists(build)
    assert engine.has_template(acme.release) and engine.exists(acme.physical_name)


def test_account_deletion_is_refused_while_sole_admin(acme: Database, owner: User) -> None:
    assert "only administrator of “acme”" in owner.deletion_refusals()[0]
    Membership.objects.filter(database=acme, role="user").update(role="admin")
    assert owner.deletion_refusals() == []


# Who reaches what: the owner manages, a member sees, an outsider gets 404.
MANAGE_PAGES = ["/databases/acme/duplicate/", "/databases/acme/rename/", "/databases/acme/delete/"]


def test_members_cannot_manage_and_outsiders_get_404(
    acme: Database, owner: User, member: User, outsider: User
) -> None:
    for path in MANAGE_PAGES:
        assert client_for(owner).get(path).status_code == 200
        assert client_for(member).get(path).status_code == 403
        assert (
            client_for(member).post(path, {"name": "x-y-z", "confirm": "acme"}).status_code == 403
        )
        assert client_for(outsider).get(path).status_code == 404
        assert client_for(outsider).post(path, {"confirm": "acme"}).status_code == 404
    assert Database.objects.get(pk=acme.pk).name == "acme"
    assert not Operation.objects.exists()


def test_operations_are_visible_only_to_those_concerned(
    acme: Database, owner: User, outsider: User
) -> None:
    client_for(owner).post("/databases/acme/duplicate/", {"name": "acme-copy"})
    operation = Operation.objects.get()
    assert client_for(owner).get(f"/operations/{operation.pk}/").status_code == 200
    assert client_for(outsider).get(f"/operations/{operation.pk}/").status_code == 404
    run_pending()


def test_the_api_creates_lists_renames_duplicates_and_deletes(
    engine_kind: str, owner: User
) -> None:
    client = api(owner)
    response = client.post("/api/v1/databases", {"name": "api-db"}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["engine"] == engine_kind and response.json()["role"] == "admin"
    assert [d["name"] for d in client.get("/api/v1/databases").json()["data"]] == ["api-db"]

    response = client.patch(
        "/api/v1/databases/api-db", {"name": "api-db2"}, content_type="application/json"
    )
    assert response.json()["name"] == "api-db2"

    response = client.post(
        "/api/v1/databases/api-db2/duplicate",
        {"name": "api-copy", "for_testing": True},
        content_type="application/json",
    )
    assert response.status_code == 202
    operation_id = response.json()["id"]
    run_pending()
    operation = client.get(f"/api/v1/operations/{operation_id}").json()
    assert (operation["state"], operation["progress"], operation["target"]) == (
        "done",
        100,
        "api-copy",
    )

    response = client.delete("/api/v1/databases/api-copy")
    assert response.status_code == 202 and response.json()["kind"] == "delete"
    run_pending()
    assert client.get("/api/v1/databases/api-copy").status_code == 404


# The web server serves many requests at once, and bench/create.py measures creates that way.
@pytest.mark.usefixtures("transactional_db")
def test_creates_at_once_each_get_their_own_database(engine_kind: str, owner: User) -> None:
    names = [f"shop-{i}" for i in range(6)] + ["same-name", "same-name"]
    clients = [api(owner) for _ in names]

    def create(client: Client, name: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        try:
            response = client.post(
                "/api/v1/databases", {"name": name}, content_type="application/json"
            )
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(create, clients, names))

    refused = [body["detail"] for code, body in results if code != 201]
    # Checked before the insert, or refused by the unique name as it is inserted.
    assert refused in (
        ["The name “same-name” is already taken. Choose another one."],
        ["That name was just taken. Choose another one."],
    ), results
    databases = Database.objects.all()
    assert sorted(d.name for d in databases) == sorted(set(names))
    for database in databases:
        assert (database.engine, database.status) == (engine_kind, "active")
        assert database.role_of(owner) == "admin"
        with tenant.using(database) as db:
            assert ws.User.objects.using(db).get().login == owner.email
            assert ws.Settings.objects.using(db).get().uuid == database.uuid
    # The refused create left nothing behind.
    assert physical_names(engine_kind) == {d.physical_name for d in databases}


def physical_names(engine_kind: str) -> set[str]:
    """The tenant databases that exist on the engine."""
    if engine_kind == "postgresql":
        names = server_engine(Server.objects.get()).sizes()
    else:
        names = [path.stem for path in sqlite_engine().root.glob("*.sqlite3")]
    return {name for name in names if name.startswith("tn_")}


def test_the_api_refuses_bad_input_with_a_sentence(acme: Database, owner: User) -> None:
    client = api(owner)
    response = client.post("/api/v1/databases", {"name": "www"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"] == "The name “www” is reserved. Choose another one."
    response = client.post("/api/v1/databases", {}, content_type="application/json")
    assert response.status_code == 422 and "name" in response.json()["detail"]
    response = client.post(  # multipart without its boundary
        "/api/v1/databases/acme/restore", b"--x--", content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The upload cannot be read: ")


def test_the_api_answers_members_403_and_outsiders_404(
    acme: Database, member: User, outsider: User
) -> None:
    as_member, as_outsider = api(member), api(outsider)
    assert as_member.get("/api/v1/databases/acme").json()["role"] == "user"
    calls = [
        ("patch", "/api/v1/databases/acme", {"name": "stolen"}),
        ("delete", "/api/v1/databases/acme", None),
        ("post", "/api/v1/databases/acme/duplicate", {"name": "acme-x"}),
    ]
    for method, path, body in calls:
        kwargs = {"content_type": "application/json", "data": body} if body else {}
        assert getattr(as_member, method)(path, **kwargs).status_code == 403
        assert getattr(as_outsider, method)(path, **kwargs).status_code == 404
    assert as_outsider.get("/api/v1/databases/acme").status_code == 404
    assert Database.objects.get(pk=acme.pk).name == "acme"


def test_the_manager_page_makes_the_same_queries_for_5_or_100_databases(owner: User) -> None:
    client = client_for(owner)
    client.get("/databases/")  # the first request records the session (allauth's usersessions)
    database_records(owner, 5, "few")
    with CaptureQueriesContext(connection) as few:
        assert client.get("/databases/").status_code == 200
    database_records(owner, 95, "many")
    with CaptureQueriesContext(connection) as many:
        page = client.get("/databases/").content.decode()
    assert page.count('<tr id="db-') == 100
    assert len(many.captured_queries) == len(few.captured_queries)
