"""The engines' conformance suite: every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from tenantry.engines import base, postgresql
from tenantry.engines.base import Engine
from tenantry.engines.postgresql import KEEP_IDLE, PostgreSQLEngine
from tenantry.engines.sqlite import SQLiteEngine
from tenantry.workspace import models as ws
from tenantry.workspace.releases import LATEST, RELEASES
from tests.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, db: None) -> Engine:
    if request.param == "sqlite":
        return SQLiteEngine(tmp_path / "ten ants?#é")  # the files are opened as URIs
    server: PostgresServer = request.getfixturevalue("pg_server")
    return PostgreSQLEngine(server.url, f"pg-{server.port}")


@pytest.fixture
def physical(engine: Engine) -> Iterator[str]:
    name = "tn_" + secrets.token_hex(6)
    yield name
    engine.drop(name)


def applied(engine: Engine, physical: str) -> list[str]:
    alias = engine.connect(physical)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT name FROM django_migrations WHERE app = 'workspace' ORDER BY id")
        names = [row[0] for row in cursor.fetchall()]
    engine.disconnect(physical)
    return names


def test_create_makes_a_database_at_the_release_from_its_template(
    engine: Engine, physical: str
) -> None:
    engine.create(physical, LATEST)
    assert engine.exists(physical)
    assert applied(engine, physical)[-1] == RELEASES[LATEST]
    alias = engine.connect(physical)
    jobs = set(ws.ScheduledJob.objects.using(alias).values_list("name", flat=True))
    assert "Send queued mail" in jobs and "Send contact reminders" in jobs
    assert engine.size(physical) > 0
    engine.disconnect(physical)


def test_an_older_release_is_made_from_its_own_template(engine: Engine, physical: str) -> None:
    engine.create(physical, "1.0")
    assert applied(engine, physical) == ["0001_initial"]


def test_create_copies_the_template_and_migrates_nothing(
    engine: Engine, physical: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.prepare_template(LATEST)

    def no_migration(*args: object, **kwargs: object) -> None:
        raise AssertionError("a create ran a migration")

    monkeypatch.setattr(base, "call_command", no_migration)
    engine.create(physical, LATEST)
    assert applied(engine, physical)[-1] == RELEASES[LATEST]  # at the release, all the same
    schema = engine.schema(physical)
    assert "workspace_contact" in schema and schema == engine.schema(engine.template_name(LATEST))


def test_clone_is_an_exact_and_independent_copy(engine: Engine, physical: str) -> None:
    engine.create(physical, LATEST)
    alias = engine.connect(physical)
    ws.Contact.objects.using(alias).create(name="Ada", email="ada@example.com", company="AE")
    engine.disconnect(physical)
    copy = physical + "_copy"
    try:
        engine.clone(physical, copy)
        copy_alias = engine.connect(copy)
        assert list(ws.Contact.objects.using(copy_alias).values_list("name", "company")) == [
            ("Ada", "AE")
        ]
        ws.Contact.objects.using(copy_alias).create(name="Only in the copy")
        engine.disconnect(copy)
        alias = engine.connect(physical)
        assert ws.Contact.objects.using(alias).count() == 1
        engine.disconnect(physical)
    finally:
        engine.drop(copy)


def test_requests_to_the_source_wait_during_a_clone_and_none_fails(
    engine: Engine, physical: str
) -> None:
    engine.create(physical, LATEST)
    alias = engine.connect(physical)
    ws.Contact.objects.using(alias).bulk_create(
        [ws.Contact(name=f"c{i}", notes="x" * 2000) for i in range(3000)]
    )
    engine.disconnect(physical)
    errors: list[BaseException] = []
    waits: list[float] = []
    stop = threading.Event()

    def requests() -> None:
        # Like the gateway: each request opens its connection, writes, and closes it.
        try:
            while not stop.is_set():
                started = time.monotonic()
                db = engine.connect(physical)
                ws.Contact.objects.using(db).create(name="during")
                engine.disconnect(physical)
                waits.append(time.monotonic() - started)
        except BaseException as e:
            errors.append(e)
        finally:
            connections.close_all()

    thread = threading.Thread(target=requests)
    thread.start()
    time.sleep(0.2)
    copy = physical + "_copy"
    try:
        engine.clone(physical, copy)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
        engine.drop(copy)
    assert not errors, errors
    assert len(waits) > 2
    print(f"{engine.kind}: longest wait of a request during the clone {max(waits) * 1000:.0f} ms")


def test_drop_removes_and_is_idempotent(engine: Engine, physical: str) -> None:
    engine.create(physical, LATEST)
    engine.drop(physical)
    assert not engine.exists(physical)
    engine.drop(physical)


def test_drop_works_while_a_connection_is_open(engine: Engine, physical: str) -> None:
    engine.create(physical, LATEST)
    alias = engine.connect(physical)
    assert ws.Contact.objects.using(alias).count() == 0
    engine.drop(physical)
    assert not engine.exists(physical)


def backend_pid(db: psycopg.Connection) -> int:  # type: ignore[type-arg]
    return int(db.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]


def admin_pid(engine: PostgreSQLEngine) -> int:
    with engine.admin() as db:
        return backend_pid(db)


def admin_sessions(server: PostgresServer) -> int:
    """Client sessions on the maintenance database, other than psql's own, once those just
    closed have ended (a backend exits a moment after its client)."""
    deadline = time.monotonic() + 5
    while True:
        count = int(
            server.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        )
        if count <= KEEP_IDLE or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_postgresql_admin_connections_are_kept_but_never_stale_nor_shared(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = PostgreSQLEngine(pg_server.url, "kept")
    first = admin_pid(engine)
    assert admin_pid(engine) == first  # kept, not a new backend each time

    # Ended by the server meanwhile (a restart, an administrator): a new one, no error.
    pg_server.psql(f"SELECT pg_terminate_backend({first})")
    second = admin_pid(engine)
    assert second != first

    # One kept for longer than KEEP_SECONDS is not trusted: a new one.
    monkeypatch.setattr(postgresql, "KEEP_SECONDS", 0.0)
    assert admin_pid(engine) != second
    monkeypatch.undo()
    second = admin_pid(engine)

    # A block that fails does not hand its connection on.
    with pytest.raises(ZeroDivisionError), engine.admin() as db:
        db.execute("SELECT 1")
        1 / 0  # noqa: B018
    assert admin_pid(engine) != second

    # Used at once, as many as needed; afterwards at most KEEP_IDLE stay open.
    with ExitStack() as stack:
        pids = {backend_pid(stack.enter_context(engine.admin())) for _ in range(KEEP_IDLE + 3)}
    assert len(pids) == KEEP_IDLE + 3
    assert admin_sessions(pg_server) <= KEEP_IDLE

    # A forked child opens its own: the parent's socket is the parent's alone.
    kept = admin_pid(engine)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child
        try:
            os.write(write, str(admin_pid(engine)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_pid = int(os.read(read, 32))
    os.close(read)
    os.waitpid(child, 0)
    assert child_pid != kept
    assert admin_pid(engine) == kept  # and the parent's still works
