"""The engines' conformance suite: every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import io
import os
import random
import re
import secrets
import sqlite3
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from tenantry.engines import base, postgresql, sqlite
from tenantry.engines.base import Engine, EngineError
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

    monkeypatch.setattr(base.MigrationExecutor, "migrate", no_migration)
    engine.create(physical, LATEST)
    assert applied(engine, physical)[-1] == RELEASES[LATEST]  # at the release, all the same
    schema = engine.schema(physical)
    assert "workspace_contact" in schema and schema == engine.schema(engine.template_name(LATEST))


def test_clone_is_an_exact_and_independent_copy(engine: Engine, physical: str) -> None:
    engine.create(physical, LATEST)
    alias = engine.connect(physical)
    company = ws.Company.objects.using(alias).create(name="AE")
    ws.Contact.objects.using(alias).create(name="Ada", email="ada@example.com", company=company)
    engine.disconnect(physical)
    copy = physical + "_copy"
    try:
        engine.clone(physical, copy)
        copy_alias = engine.connect(copy)
        assert list(ws.Contact.objects.using(copy_alias).values_list("name", "company__name")) == [
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


# A SQLite dump is read once, in pieces, whatever it holds: split where SQLite would split it,
# at most a statement and a batch in memory, stopped once it outlasts its size.

AWKWARD = [
    "a;b", "it's", "it''s", "-- not a comment", "/* nor this", "*/", "END;", "BEGIN TRANSACTION;",
    "COMMIT;", "line\nbreak;\n", "crlf\r\n;\r", "é ✓ 💾", '[x] `y` "z";', ";", "", "a;\n" * 100_000,
]  # fmt: skip


@pytest.mark.parametrize("chunk", [7, sqlite.CHUNK])
def test_sqlite_loads_a_dump_with_triggers_and_awkward_strings_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Cut in pieces of 7 bytes too: a string, comment, quoted name or keyword then spans two."""
    monkeypatch.setattr(sqlite, "CHUNK", chunk)
    engine = SQLiteEngine(tmp_path)
    with sqlite3.connect(engine.path("tn_source")) as db:
        db.executescript(
            'CREATE TABLE "we;ird" ("co--l" TEXT, [b/*] BLOB, `n` REAL);\n'
            "CREATE TABLE log(text TEXT);\n"
            'CREATE INDEX "by;col" ON "we;ird"("co--l");\n'
            'CREATE TRIGGER "log;it" AFTER INSERT ON "we;ird" BEGIN\n'
            "  INSERT INTO log VALUES ('inserted; END; -- /* */ ''quoted''');\n"
            '  INSERT INTO log VALUES (NEW."co--l");\n'
            "END;\n"
        )
        db.executemany(
            'INSERT INTO "we;ird" VALUES (?, ?, ?)',
            [(text, text.encode(), 1.5) for text in AWKWARD] + [(None, None, None)],
        )
    db.close()
    dump = b"".join(engine.dump("tn_source"))
    engine.load("tn_copy", io.BytesIO(dump))
    rows = 'SELECT * FROM "we;ird" ORDER BY rowid'
    logged = "SELECT * FROM log ORDER BY rowid"
    source, copy = (sqlite3.connect(engine.path(name)) for name in ("tn_source", "tn_copy"))
    assert copy.execute(rows).fetchall() == source.execute(rows).fetchall()
    assert copy.execute(logged).fetchall() == source.execute(logged).fetchall()
    assert engine.schema("tn_copy") == engine.schema("tn_source")
    # The trigger came whole: both of its statements run.
    for db in (source, copy):
        db.execute("""INSERT INTO "we;ird" VALUES ('new', NULL, NULL)""")
        assert db.execute(logged).fetchall()[-2:] == [
            ("inserted; END; -- /* */ 'quoted'",),
            ("new",),
        ]
        db.close()


def test_sqlite_cuts_a_dump_where_sqlite_would() -> None:
    """Statements end where sqlite3_complete() says, in pieces of any size (empty statements,
    `;;`, may be joined to the one before)."""
    tokens = [
        "'", '"', "`", "[", "]", ";", ";", "-", "--", "/", "*", "/*", "*/", "\n", " ", "\v", "x",
        "CREATE", "temp", "TEMPORARY", "trigger", "END", "explain", "BEGIN", "é", "trig", "ger",
        "end_", "(",
    ]  # fmt: skip
    empty = re.compile(rb"(?:\s|--[^\n]*\n|/\*.*?\*/)*;", re.DOTALL)
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(tokens) + rng.choice(["", " "]) for _ in range(25)).encode()
        expected, start = [], 0
        for at in range(len(text)):
            if text[at] == ord(";") and sqlite3.complete_statement(text[start : at + 1].decode()):
                expected.append(at + 1)
                start = at + 1
        statements, found, at = sqlite._Statements(), [], 0
        while at < len(text):
            size = rng.choice([1, 2, 3, 7, 100])
            found += [at + end for end in statements.ends(text[at : at + size])]
            at += size
        joined = [end for end in expected if end not in found]
        starts = dict(zip(expected, [0, *expected], strict=False))
        assert set(found) <= set(expected), text
        assert all(empty.fullmatch(text[starts[end] : end]) for end in joined), text


class Endless(io.RawIOBase):
    """A dump read as from a ZIP: `head`, then `line` again, `times` times; each read after
    `pause` seconds."""

    def __init__(self, head: bytes, line: bytes, times: int, pause: float = 0) -> None:
        self.head, self.line, self.left, self.pause = head, line, times, pause

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        time.sleep(self.pause)
        lines = min(self.left, max(1, size // len(self.line)))
        piece, self.head, self.left = self.head + self.line * lines, b"", self.left - lines
        return piece


def test_sqlite_load_memory_stays_flat_whatever_the_dump(tmp_path: Path) -> None:
    """At most a statement, refused past STATEMENT_MAX, or a batch and its copies."""
    engine = SQLiteEngine(tmp_path)
    endless = Endless(b"CREATE TABLE t(x);\nINSERT INTO t VALUES ('", b"a;\n", 100_000_000)
    rows = Endless(
        b"CREATE TABLE t(x);\n", b"INSERT INTO t VALUES ('" + b"x" * 10_000 + b"');\n", 6400
    )
    for dump, refused, most in (
        (endless, sqlite.TOO_LONG, sqlite.STATEMENT_MAX + 2 * sqlite.CHUNK),  # 300 MB
        (rows, None, 4 * sqlite.BATCH_BYTES),  # 64 MB
    ):
        tracemalloc.start()
        try:
            if refused:
                with pytest.raises(EngineError, match=re.escape(refused)):
                    engine.load("tn_x", dump)
            else:
                engine.load("tn_x", dump)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < most, peak
    with sqlite3.connect(engine.path("tn_x")) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 6400
    db.close()


def test_sqlite_load_is_stopped_between_statements_once_it_outlasts_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dump read slowly, in small pieces, each of quick statements."""
    monkeypatch.setattr(sqlite, "LOAD_SECONDS", 1)
    monkeypatch.setattr(sqlite, "CHUNK", 1024)
    engine = SQLiteEngine(tmp_path)
    slow = Endless(b"CREATE TABLE t(x);\n", b"INSERT INTO t VALUES (1);\n", 10**6, pause=0.25)
    started = time.monotonic()
    with pytest.raises(EngineError, match="ran longer than a dump of its size needs"):
        engine.load("tn_x", slow)
    assert time.monotonic() - started < 5
    assert not engine.exists("tn_x") and list(tmp_path.iterdir()) == []
