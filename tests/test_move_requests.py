"""A database moving to another server fails no request: reads go on from the copy being left,
writes wait for the switch and are done on the new server, and a request that found the
database before the switch is served where it went.

Real servers (two PostgreSQL), real requests through the gateway, a real move operation.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.base import EngineError
from tenantry.engines.fleet import engine_for, server_engine
from tenantry.engines.models import GIB, Server
from tenantry.engines.postgresql import PostgreSQLEngine
from tenantry.gateway import sites
from tenantry.operations.tasks import run_operation
from tenantry.workspace import releases, tenant, views
from tests.conftest import make_account
from tests.helpers import signed_in
from tests.postgres import PostgresServer


@pytest.fixture
def servers(pg_servers: list[PostgresServer], transactional_db: None) -> Iterator[list[Server]]:
    """pg-b has the more room: new databases go there; they move to pg-a."""
    made = []
    for server, name, room in zip(pg_servers, ["pg-a", "pg-b"], [10, 20], strict=True):
        record = Server(name=name, capacity_bytes=room * GIB)
        record.url = server.url
        record.save()
        made.append(record)
    yield made
    for database in Database.objects.all():
        lifecycle.drop_storage(database)


@pytest.fixture
def owner(transactional_db: None) -> User:
    return make_account("mover@example.com")


@pytest.fixture
def mover(servers: list[Server], owner: User) -> Database:
    database = lifecycle.create("mover", by=owner)
    assert database.server == servers[1]
    # Enough to copy for a while (tens of MB): the requests below meet the move.
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).bulk_create(  # type: ignore[attr-defined]
            Contact(name=f"c{i}", notes="x" * 2000) for i in range(20_000)
        )
    return database


def names(database: Database) -> list[str]:
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        written = Contact.objects.using(db).filter(name__startswith="w")  # type: ignore[attr-defined]
        return list(written.values_list("name", flat=True))


class Traffic:
    """A person writing (or reading) in the database's workspace, request after request, in a
    thread of its own: when each request started, its status and how long it took."""

    def __init__(self, client: Client, kind: str) -> None:
        self.client, self.kind = client, kind
        self.answers: list[tuple[float, int, float]] = []
        self.written: list[str] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                name = f"w{len(self.answers) + 1}"
                started = time.monotonic()
                if self.kind == "write":
                    response = self.client.post("/contacts/", {"name": name})
                else:
                    response = self.client.get("/")
                self.answers.append((started, response.status_code, time.monotonic() - started))
                if self.kind == "write" and response.status_code == 302:
                    self.written.append(name)
        except BaseException as error:
            self.errors.append(error)
        finally:
            connections.close_all()

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.answers) < count and not self.errors:
            assert time.monotonic() < deadline, "the requests do not go through"
            time.sleep(0.01)

    def failed(self) -> list[int]:
        return [status for _, status, _ in self.answers if status not in (200, 302)]

    def longest(self) -> float:
        return max(seconds for _, _, seconds in self.answers)

    def served_within(self, start: float, end: float) -> int:
        return sum(1 for at, _, seconds in self.answers if at >= start and at + seconds <= end)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool]]:
    """Each time a request asks whether its database moved: (whether it waited for a move,
    whether it then ran again)."""
    seen: list[tuple[bool, bool]] = []
    moved = views._moved

    def spy(database: Database, *, wait: bool) -> Database | None:
        found = moved(database, wait=wait)
        seen.append((wait, found is not None))
        return found

    monkeypatch.setattr(views, "_moved", spy)
    return seen


def test_writes_during_a_move_wait_for_the_switch_and_none_fails(
    mover: Database, owner: User, servers: list[Server], waits: list[tuple[bool, bool]]
) -> None:
    old = engine_for(mover)
    operation = lifecycle.start_move(mover, servers[0], by=None)
    writer, reader = (
        Traffic(signed_in(mover, owner), "write"),
        Traffic(signed_in(mover, owner), "read"),
    )
    with writer, reader:
        writer.wait_for(3)
        reader.wait_for(3)
        started = time.monotonic()
        run_operation.call(operation.pk)
        ended = time.monotonic()
        writer.wait_for(len(writer.answers) + 3)  # and on, on the new server
    assert not writer.errors and not reader.errors, writer.errors + reader.errors
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    assert not writer.failed() and not reader.failed()
    assert (True, True) in waits  # a write met the move, waited for the switch, ran again
    assert reader.served_within(started, ended)  # reading went on meanwhile
    # Every write is on the new server, once; nothing is left on the old one.
    mover.refresh_from_db()
    assert mover.server == servers[0]
    assert sorted(names(mover)) == sorted(writer.written)
    assert not old.exists(mover.physical_name)
    # The gateway forgot the old place: the next request goes to the new server at once.
    found = sites.lookup("mover")
    assert found is not None and found.server_id == servers[0].pk
    print(
        f"move {ended - started:.2f} s; {len(writer.answers)} writes and "
        f"{len(reader.answers)} reads ({reader.served_within(started, ended)} during the move), "
        f"none failed; longest write {writer.longest():.2f} s, read {reader.longest():.2f} s"
    )


def test_a_request_that_found_the_database_before_the_switch_is_served_where_it_went(
    mover: Database, owner: User, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = signed_in(mover, owner)
    before = Database.objects.select_related("server").get(pk=mover.pk)
    run_operation.call(lifecycle.start_move(mover, servers[0], by=None).pk)
    # As a request in flight at the switch, or another process's stale lookup, would have it.
    monkeypatch.setattr(sites, "lookup", lambda name: copy.deepcopy(before))
    assert client.get("/").status_code == 200
    assert client.post("/contacts/", {"name": "w1"}).status_code == 302
    monkeypatch.undo()
    mover.refresh_from_db()
    assert names(mover) == ["w1"]


def test_a_write_waiting_for_a_move_that_fails_is_done_where_the_database_stayed(
    mover: Database, owner: User, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = signed_in(mover, owner)
    copying = threading.Event()

    def fails(engine: PostgreSQLEngine, physical: str, to: PostgreSQLEngine) -> None:
        copying.set()
        time.sleep(1)
        raise EngineError("The new server stopped answering.")

    monkeypatch.setattr(PostgreSQLEngine, "move", fails)
    operation = lifecycle.start_move(mover, servers[0], by=None)
    worker = threading.Thread(target=_run_in_thread, args=(operation.pk,))
    worker.start()
    try:
        assert copying.wait(30)
        started = time.monotonic()
        assert client.post("/contacts/", {"name": "w1"}).status_code == 302
        waited = time.monotonic() - started
    finally:
        worker.join()
    operation.refresh_from_db()
    assert operation.state == "failed"
    assert waited > 0.3  # it waited for the move's end, then wrote where the database is
    mover.refresh_from_db()
    assert mover.server == servers[1] and names(mover) == ["w1"]
    assert not server_engine(servers[0]).exists(mover.physical_name)


def _run_in_thread(operation_id: int) -> Any:
    try:
        run_operation.call(operation_id)
    finally:
        connections.close_all()
