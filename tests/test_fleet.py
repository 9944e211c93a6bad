"""The fleet of PostgreSQL servers: register, place, list, drain; and the operator's CLI."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.base import DatabaseHeld, EngineError
from tenantry.engines.fleet import engine_for
from tenantry.engines.models import GIB, Server
from tenantry.engines.postgresql import PostgreSQLEngine
from tenantry.operations.tasks import run_operation
from tenantry.releases.models import latest
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tests.conftest import make_account
from tests.helpers import killed_while_holding, run_again, write
from tests.postgres import PostgresServer


def tenantry(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_servers(pg_servers: list[PostgresServer], transactional_db: None) -> Iterator[None]:
    tenantry("servers", "add", pg_servers[0].url, "--name", "pg-a", "--capacity-gb", "10")
    tenantry("servers", "add", pg_servers[1].url, "--name", "pg-b", "--capacity-gb", "20")
    yield
    for database in Database.objects.all():
        lifecycle.drop_storage(database)


@pytest.fixture
def owner(transactional_db: None) -> User:
    return make_account("ops@example.com")


def test_server_urls_are_stored_encrypted(two_servers: None, pg_servers: list) -> None:  # type: ignore[type-arg]
    server = Server.objects.get(name="pg-a")
    assert pg_servers[0].url not in server.url_encrypted
    assert server.url == pg_servers[0].url


def test_bad_server_urls_are_refused_with_a_sentence(transactional_db: None) -> None:
    for url in ["mysql://db.example.com/x", "postgresql://h:abc/", "postgresql://[::1/"]:
        with pytest.raises(CommandError, match="must look like postgresql://"):
            tenantry("servers", "add", url)
    for capacity in ["-5", "0", "99999999999999999999"]:
        with pytest.raises(CommandError, match="capacity must be from 1 to 1000000 GB"):
            tenantry("servers", "add", "postgresql://h/postgres", "--capacity-gb", capacity)
    with pytest.raises(CommandError, match="cannot be reached"):
        tenantry("servers", "add", "postgresql://postgres@127.0.0.1:1/postgres")
    assert not Server.objects.exists()


def test_new_databases_go_to_the_server_with_the_most_room(two_servers: None, owner: User) -> None:
    first = lifecycle.create("first", by=owner)
    assert first.server is not None and first.server.name == "pg-b"
    Server.objects.filter(name="pg-b").update(capacity_bytes=GIB // 1024)
    second = lifecycle.create("second", by=owner)
    assert second.server is not None and second.server.name == "pg-a"


def test_servers_list_shows_databases_and_bytes(two_servers: None, owner: User) -> None:
    lifecycle.create("listed", by=owner)
    lines = tenantry("servers", "list").splitlines()
    assert lines[0].startswith("pg-a\t") and "0 databases" in lines[0]
    assert lines[1].startswith("pg-b\t") and "1 databases" in lines[1] and "MB" in lines[1]
    assert "password" not in "".join(lines)


def test_drain_moves_every_database_with_its_data(two_servers: None, owner: User) -> None:
    database = lifecycle.create("mover", by=owner)
    assert database.server is not None and database.server.name == "pg-b"
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).create(name="Grace")
    old_engine = engine_for(database)

    output = tenantry("servers", "drain", "pg-b")
    assert "Moving mover to pg-a" in output and "%]" in output
    database.refresh_from_db()
    assert database.server is not None and database.server.name == "pg-a"
    assert not old_engine.exists(database.physical_name)
    with tenant.using(database) as db:
        assert list(Contact.objects.using(db).values_list("name", flat=True)) == ["Grace"]
    # A draining server receives no new database.
    assert lifecycle.create("after", by=owner).server.name == "pg-a"  # type: ignore[union-attr]


def test_a_database_a_killed_worker_left_read_only_is_writable_when_its_move_fails(
    two_servers: None, owner: User
) -> None:
    database = lifecycle.create("mover", by=owner)
    operation = lifecycle.start_move(database, Server.objects.get(name="pg-a"), by=None)
    killed_while_holding(engine_for(database).held(database.physical_name))  # copying it
    with pytest.raises(DatabaseHeld):
        write(database)
    Server.objects.filter(name="pg-a").delete()  # so the next attempt fails at once
    operation = run_again(operation)
    assert operation.state == "failed"
    write(database)


def test_a_move_that_fails_after_the_switch_keeps_the_database_where_it_went(
    two_servers: None, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = lifecycle.create("mover", by=owner)  # on pg-b
    write(database)
    operation = lifecycle.start_move(database, Server.objects.get(name="pg-a"), by=None)
    drop = PostgreSQLEngine.drop

    def old_copy_will_not_go(engine: PostgreSQLEngine, physical: str) -> None:
        if engine.name == "pg-b":
            raise EngineError("pg-b cannot be reached.")
        drop(engine, physical)

    monkeypatch.setattr(PostgreSQLEngine, "drop", old_copy_will_not_go)
    run_operation.call(operation.pk)
    monkeypatch.undo()
    operation.refresh_from_db()
    assert operation.state == "failed"
    database.refresh_from_db()
    assert database.server.name == "pg-a"  # type: ignore[union-attr]
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:  # the undo left the live copy alone
        assert Contact.objects.using(db).filter(name="written by a user").exists()


def test_drain_without_room_elsewhere_is_a_clear_error(
    pg_server: PostgresServer, owner: User
) -> None:
    tenantry("servers", "add", pg_server.url, "--name", "alone")
    lifecycle.create("stuck", by=owner)
    try:
        with pytest.raises(CommandError, match="No other server has room for stuck"):
            tenantry("servers", "drain", "alone")
    finally:
        for database in Database.objects.all():
            lifecycle.drop_storage(database)


def test_the_db_cli_creates_duplicates_renames_lists_and_deletes(owner: User) -> None:
    assert "Created shop at http://shop.localhost:8000." in tenantry(
        "db", "create", "shop", "--owner", owner.email
    )
    output = tenantry("db", "duplicate", "shop", "shop-test")
    assert "[" in output and "Duplicated shop as shop-test." in output
    copy = Database.objects.get(name="shop-test")
    with tenant.using(copy) as db:
        assert not ws.MailServer.objects.using(db).get().active
    tenantry("db", "rename", "shop-test", "shop-staging")
    listing = tenantry("db", "list", "--account", owner.email)
    assert (
        f"shop\tsqlite\t{latest()}\tTrial: 15 days left" in listing
        and "shop-staging\tsqlite" in listing
    )
    with pytest.raises(CommandError, match="add --yes to confirm"):
        tenantry("db", "delete", "shop-staging")
    assert "Deleted shop-staging." in tenantry("db", "delete", "shop-staging", "--yes")
    assert not Database.objects.filter(physical_name=copy.physical_name).exists()
    lifecycle.drop_storage(Database.objects.get(name="shop"))


def test_the_db_cli_refuses_with_one_sentence(owner: User) -> None:
    with pytest.raises(CommandError, match="There is no database named nope."):
        tenantry("db", "rename", "nope", "other")
    with pytest.raises(CommandError, match="is reserved"):
        tenantry("db", "create", "admin", "--owner", owner.email)
    with pytest.raises(CommandError, match="There is no account with the email x@example.com."):
        tenantry("db", "create", "fine-name", "--owner", "x@example.com")
