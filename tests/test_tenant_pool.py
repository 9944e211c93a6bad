"""Workspace requests on PostgreSQL keep their sessions: one backend serves request after
request, the process keeps a bounded number idle for a while, and a kept session never holds
up a copy nor outlives a hold, a restart or a session ended by the server.

Requests go through the gateway (`<name>.localhost`) to a database on a real server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.test import override_settings

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.backends.postgresql import pool
from tenantry.engines.fleet import engine_for
from tenantry.engines.postgresql import DRAIN_SECONDS, PostgreSQLEngine
from tenantry.operations.models import Operation
from tenantry.workspace import releases, tenant
from tests.helpers import run_pending, signed_in
from tests.postgres import PostgresServer

pytestmark = pytest.mark.parametrize("engine_kind", ["postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    """Each test starts, and leaves, with no session kept from another."""
    pool.discard_all()
    yield
    pool.discard_all()


@pytest.fixture
def acme(owner: User, engine_kind: str) -> Database:
    return lifecycle.create("acme", by=owner)


def backends(server: PostgresServer, *names: str) -> list[int]:
    """The sessions open on these databases (backend pids)."""
    with psycopg.connect(server.url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) ORDER BY pid", [list(names)]
        ).fetchall()
    return [pid for (pid,) in rows]


def soon(check: Callable[[], bool], seconds: float = 5) -> bool:
    """Whether `check` comes true within `seconds` (a backend exits a moment after its client)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def add_contact(client: object, name: str) -> None:
    response = client.post("/contacts/", {"name": name})  # type: ignore[attr-defined]
    assert response.status_code == 302, response.content.decode()[:500]


def test_requests_to_a_database_share_one_session(
    acme: Database, owner: User, pg_server: PostgresServer
) -> None:
    client = signed_in(acme, owner)
    seen: set[int] = set()
    for i in range(20):
        assert client.get("/").status_code == 200
        add_contact(client, f"contact {i}")
        seen.update(backends(pg_server, acme.physical_name))
    assert len(seen) == 1  # one backend served all 40 requests
    assert pool.parked() == 1


def test_the_process_keeps_no_more_sessions_than_its_bound(
    owner: User, engine_kind: str, pg_server: PostgresServer
) -> None:
    databases = [lifecycle.create(f"many-{i}", by=owner) for i in range(4)]
    names = [d.physical_name for d in databases]
    with override_settings(TENANT_CONNECTIONS=2):
        for database in databases * 2:
            assert signed_in(database, owner).get("/").status_code == 200
            assert pool.parked() <= 2
        assert soon(lambda: len(backends(pg_server, *names)) == 2)
        # The two kept are the last used: the next request to those reuses them.
        kept = backends(pg_server, *names)
        assert signed_in(databases[-1], owner).get("/").status_code == 200
        assert backends(pg_server, *names) == kept
    with override_settings(TENANT_CONNECTIONS=0):  # none kept: a session per request
        pool.discard_all()
        assert signed_in(databases[0], owner).get("/").status_code == 200
        assert pool.parked() == 0
        assert soon(lambda: not backends(pg_server, *names))


def test_kept_sessions_close_once_idle_for_the_timeout(
    acme: Database, owner: User, pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "IDLE_SECONDS", 0.5)
    assert signed_in(acme, owner).get("/").status_code == 200
    assert len(backends(pg_server, acme.physical_name)) == 1
    # No request comes: the process closes it by itself.
    assert soon(lambda: not backends(pg_server, acme.physical_name), 5)
    assert pool.parked() == 0


def test_a_duplicate_right_after_requests_is_not_held_up_by_kept_sessions(
    acme: Database, owner: User, pg_server: PostgresServer
) -> None:
    client = signed_in(acme, owner)
    for i in range(5):
        add_contact(client, f"contact {i}")
    # A session another process keeps, as this one's pool would have parked it.
    other = psycopg.connect(pg_server.url_for(acme.physical_name), autocommit=True)
    other.execute("SELECT set_config('application_name', %s, false)", [pool.PARKED])
    assert len(backends(pg_server, acme.physical_name)) == 2
    started = time.monotonic()
    lifecycle.start_duplicate(acme, "acme-copy", by=owner)
    run_pending()
    took = time.monotonic() - started
    assert Operation.objects.get(kind="duplicate").state == "done"
    assert took < DRAIN_SECONDS / 2, f"the duplicate waited {took:.1f} s for idle sessions"
    with pytest.raises(psycopg.OperationalError):
        other.execute("SELECT 1")  # ended by the copy
    other.close()
    # The next request finds the kept session gone, opens another and fails nothing.
    add_contact(client, "after the copy")
    print(f"duplicate right after requests: {took:.2f} s")


def test_a_session_kept_before_a_hold_ends_with_it_and_one_opened_during_it_is_not_kept(
    acme: Database, owner: User, pg_server: PostgresServer
) -> None:
    client = signed_in(acme, owner)
    add_contact(client, "before")
    [kept] = backends(pg_server, acme.physical_name)
    engine = engine_for(acme)
    assert isinstance(engine, PostgreSQLEngine)
    with engine.read_only(acme.physical_name):
        # Opened before the hold, it could still write: the hold ended it.
        assert kept not in backends(pg_server, acme.physical_name)
        assert client.get("/").status_code == 200  # reading goes on
        assert pool.parked() == 0  # read-only for its whole life: not kept
    # Writable again at once: no read-only session is handed out.
    add_contact(client, "after")
    Contact = releases.model(acme.release, "Contact")
    with tenant.using(acme) as db:
        assert set(Contact.objects.using(db).values_list("name", flat=True)) == {  # type: ignore[attr-defined]
            "before",
            "after",
        }


def test_a_kept_session_the_server_ended_is_replaced_without_an_error(
    acme: Database, owner: User, pg_server: PostgresServer
) -> None:
    client = signed_in(acme, owner)
    add_contact(client, "first")
    [kept] = backends(pg_server, acme.physical_name)
    with psycopg.connect(pg_server.url, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(%s)", [kept])
    add_contact(client, "second")
    assert kept not in backends(pg_server, acme.physical_name)


def test_a_server_restart_between_requests_fails_no_request(
    acme: Database, owner: User, pg_server: PostgresServer
) -> None:
    client = signed_in(acme, owner)
    add_contact(client, "before the restart")
    assert pool.parked() == 1
    # With its log file: else the server would keep pg_ctl's output open, and pg_ctl waiting.
    pg_server._pg_ctl("restart", "-m", "fast", "-l", str(pg_server.log_file))
    assert client.get("/").status_code == 200
    add_contact(client, "after the restart")
