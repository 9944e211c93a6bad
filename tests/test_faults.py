"""Faults of the real parts: a PostgreSQL tenant server that stops in the middle of a
duplicate, a backup (daily, and a download) and a drain; a disk that fills up under a backup
and a restore. Each operation fails with a sentence a person understands (or resumes once the
server is back), and nothing is left half-made: no orphan record, database, file or role; the
source the same, to the byte of its dump, once its server is back; the space given back.

A server is stopped (`pg_ctl stop -m immediate`, as a crash or a pulled cable would) from
inside the operation, at a known step, by wrapping the step's function: no race with a timer.
The servers are the module's own, so stopping them troubles no other test's. The full disks
are real: a small tmpfs, mounted for the test (root only).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database
from tenantry.engines import filestore
from tenantry.engines.base import EngineError
from tenantry.engines.fleet import engine_for
from tenantry.engines.models import Server
from tenantry.engines.postgresql import PostgreSQLEngine
from tenantry.engines.sqlite import SQLiteEngine
from tenantry.operations.models import Operation
from tenantry.operations.tasks import recover, run_operation
from tenantry.workspace import releases, tenant
from tests.conftest import client_for, make_account
from tests.helpers import write
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

# 40 MB of rows (1 KB each): pg_dump is still copying them when the server stops, since the
# pipe's and the sockets' buffers hold a few MB at most, so the dump cannot have finished.
FILLER = (
    "CREATE TABLE filler AS "
    "SELECT i, repeat(md5(i::text), 32) AS text FROM generate_series(1, 40000) i"
)


# The module's PostgreSQL servers, stopped and started again by the tests


@pytest.fixture(scope="module")
def pg_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PostgresServer]]:
    # Commits reach the write-ahead log at once, as on a production server: the test servers'
    # default (synchronous_commit off) would lose the last ones to a crash.
    servers = [
        PostgresServer(tmp_path_factory.mktemp("faults-pg"), settings={"synchronous_commit": "on"})
        for _ in range(2)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def is_up(server: PostgresServer) -> bool:
    status = subprocess.run(
        [str(server.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port)],
        capture_output=True,
    )
    return status.returncode == 0


def halt(server: PostgresServer) -> None:
    """Stop the server at once, as a crash would (its data stays, unlike PostgresServer.stop)."""
    server._pg_ctl("stop", "-m", "immediate")


def resume(server: PostgresServer) -> None:
    """Start it again on its port: the address the fleet has for it."""
    if not is_up(server):
        server._pg_ctl("start", "-l", str(server.log_file), "-o", f"-p {server.port}")


@pytest.fixture
def two_servers(pg_pair: list[PostgresServer], transactional_db: None) -> Iterator[list[Server]]:
    """The two servers registered as `pg-a` and `pg-b`; running again, and emptied, after."""
    registered = []
    for name, server in zip(("pg-a", "pg-b"), pg_pair, strict=True):
        record = Server(name=name)
        record.url = server.url
        record.save()
        registered.append(record)
    yield registered
    for server in pg_pair:
        resume(server)
    for database in Database.objects.all():
        lifecycle.drop_storage(database)


@pytest.fixture
def owner(transactional_db: None) -> User:
    return make_account("owner@example.com")


ON_SERVER = """
SELECT datname FROM pg_database WHERE datname LIKE 'tn\\_%'
UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenantry\\_load\\_%'
"""


def on_server(server: PostgresServer) -> list[str]:
    """The tenant databases on a server, and the roles a restore or a move uses for a while
    (the release templates aside)."""
    found = server.psql(ON_SERVER)
    return sorted(found.split()) if found else []


def filled(database: Database, server: PostgresServer | None = None) -> Database:
    """Contacts, an attachment, and (on PostgreSQL) the FILLER table besides."""
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).bulk_create(Contact(name=f"Contact {i}") for i in range(200))  # type: ignore[attr-defined]
    filestore.store(database.physical_name, [b"an attachment"])
    if server is not None:
        server.psql(FILLER, db=database.physical_name)
    return database


def filestores() -> set[str]:
    """The databases that have a filestore folder."""
    folder = filestore.root("tn_any").parent
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def dump(database: Database) -> bytes:
    """What the database holds, as its engine dumps it, without pg_dump's key of the run and
    the sequences' positions: PostgreSQL logs a sequence 32 values ahead, so after a crash
    the next id skips some (as documented), which changes no row."""
    lines = b"".join(engine_for(database).dump(database.physical_name)).splitlines()
    skipped = (b"\\restrict", b"\\unrestrict", b"SELECT pg_catalog.setval(")
    return b"\n".join(line for line in lines if not line.startswith(skipped))


def stopping(server: PostgresServer, step: Callable[..., Any]) -> Callable[..., Any]:
    """`step`, which stops the server first: the fault, at a known point of the operation."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        halt(server)
        return step(*args, **kwargs)

    return wrapper


def stopping_after_the_first_chunk(server: PostgresServer) -> Callable[..., Iterator[bytes]]:
    """PostgreSQLEngine.dump, whose server stops once the first megabyte has come."""
    original = PostgreSQLEngine.dump

    def dump(self: PostgreSQLEngine, physical: str) -> Iterator[bytes]:
        chunks = original(self, physical)
        yield next(chunks)
        halt(server)
        yield from chunks

    return dump


def server_of(
    database: Database, servers: list[Server], pg_pair: list[PostgresServer]
) -> PostgresServer:
    """The running PostgreSQL server that holds the database."""
    assert database.server is not None
    return pg_pair[[s.name for s in servers].index(database.server.name)]


def readable(sentence: str) -> None:
    """A sentence for a person: no traceback, no exception's class name standing in for it."""
    assert sentence and sentence[0].isupper(), sentence
    assert "Traceback" not in sentence and "Error)" not in sentence, sentence
    assert "unexpected error" not in sentence, sentence
    assert "\n" not in sentence and "Is the server running" not in sentence, sentence  # one line


def sweep_abandoned() -> None:
    """What the sweep does with what a failed operation could not remove at once."""
    lifecycle.remove_abandoned_creations(timezone.now() + timedelta(minutes=11))
    store.remove_abandoned(timezone.now() + timedelta(days=2))


def undo_again() -> None:
    """What happens once a worker finds an operation whose undo could not finish: recover()
    hands it out again and a worker runs it."""
    Operation.objects.filter(state="running").update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    recover()
    for operation in Operation.objects.filter(state="queued"):
        run_operation.call(operation.pk)


# A server stopped in the middle of a duplicate


def test_a_server_stopped_during_a_duplicate_fails_it_and_leaves_no_copy(
    two_servers: list[Server],
    pg_pair: list[PostgresServer],
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = filled(lifecycle.create("acme", by=owner))
    server = server_of(source, two_servers, pg_pair)
    before, folders = dump(source), filestores()
    # The database is copied; the server stops as its files are being copied.
    monkeypatch.setattr(filestore, "copy", stopping(server, filestore.copy))
    operation = lifecycle.start_duplicate(source, "acme-copy", by=owner)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert operation.state in ("failed", "running")  # running: its undo waits for the server
    readable(operation.error)
    assert "stopped answering" in operation.error or "cannot be reached" in operation.error
    monkeypatch.undo()

    resume(server)
    undo_again()
    sweep_abandoned()
    operation.refresh_from_db()
    assert operation.state == "failed"
    readable(operation.error)
    assert list(Database.objects.values_list("name", flat=True)) == ["acme"]
    assert on_server(server) == [source.physical_name]
    assert filestores() == folders
    assert dump(source) == before
    write(source)
    # The name is free again: the copy can be made now.
    operation = lifecycle.start_duplicate(source, "acme-copy", by=owner)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert operation.state == "done", operation.error


# A server stopped in the middle of a backup


def test_a_server_stopped_during_a_daily_backup_fails_it_with_a_sentence_and_no_file(
    two_servers: list[Server],
    pg_pair: list[PostgresServer],
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = lifecycle.create("acme", by=owner)
    server = server_of(database, two_servers, pg_pair)
    filled(database, server)
    before, stored = dump(database), stored_files()
    monkeypatch.setattr(PostgreSQLEngine, "dump", stopping_after_the_first_chunk(server))
    backup = store.new_backup(database, Backup.Kind.DAILY)
    with pytest.raises(EngineError, match="The dump failed"):  # the task fails: it is logged
        store.write_daily.call(backup.pk)
    monkeypatch.undo()

    failed = Activity.objects.get(kind="backup")
    assert failed.result == "failed"
    readable(failed.reason)
    assert list(Backup.objects.values_list("state", flat=True)) == ["failed"]
    assert stored_files() == stored  # the part written is gone

    resume(server)
    assert dump(database) == before
    write(database)
    backup = store.new_backup(database, Backup.Kind.DAILY)
    store.write_daily.call(backup.pk)
    assert Backup.objects.get(pk=backup.pk).state == "ready"


def stored_files() -> list[str]:
    location = Path(store.storage().location)  # type: ignore[attr-defined]
    return sorted(str(p.relative_to(location)) for p in location.rglob("*") if p.is_file())


def test_a_server_stopped_during_a_download_ends_it_broken_never_as_a_backup(
    two_servers: list[Server],
    pg_pair: list[PostgresServer],
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = lifecycle.create("acme", by=owner)
    server = server_of(database, two_servers, pg_pair)
    filled(database, server)
    before = dump(database)
    monkeypatch.setattr(PostgreSQLEngine, "dump", stopping_after_the_first_chunk(server))
    response = client_for(owner).get("/databases/acme/download/")
    assert response.status_code == 200  # the headers leave before the first byte is made
    received = io.BytesIO()
    # The headers are gone when the dump fails: the body stops there, and what came is no
    # ZIP that an unzip or a restore accepts (no central directory, no manifest). Granian 2.8
    # still ends such a response as a complete one, so a browser does not say it failed.
    with pytest.raises(Exception, match="The dump failed"):
        for chunk in response.streaming_content:  # type: ignore[attr-defined]
            received.write(chunk)
    assert received.tell() > 0
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(received)
    monkeypatch.undo()

    resume(server)
    assert dump(database) == before
    write(database)


# A server stopped in the middle of a drain


@pytest.mark.parametrize("stopped", ["source", "target"])
def test_a_server_stopped_during_a_drain_fails_the_move_and_the_database_stays_whole(
    two_servers: list[Server],
    pg_pair: list[PostgresServer],
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
    stopped: str,
) -> None:
    database = lifecycle.create("acme", by=owner)
    names = [s.name for s in two_servers]
    source_name = database.server.name  # type: ignore[union-attr]
    source = pg_pair[names.index(source_name)]
    target = pg_pair[1 - names.index(source_name)]
    filled(database, source)
    before = dump(database)
    # The database is held read-only and an empty one made on the target; then, as the copy
    # starts, a server stops.
    halted = source if stopped == "source" else target
    monkeypatch.setattr(
        PostgreSQLEngine, "_create_empty", stopping(halted, PostgreSQLEngine._create_empty)
    )
    with pytest.raises(CommandError) as refused:
        call_command("servers", "drain", source_name, stdout=io.StringIO())
    readable(str(refused.value))
    monkeypatch.undo()
    database.refresh_from_db()
    assert database.server.name == source_name  # type: ignore[union-attr]

    resume(halted)
    undo_again()
    assert Operation.objects.get().state == "failed"
    assert on_server(target) == []  # no half-made copy on the target
    assert on_server(source) == [database.physical_name]
    assert dump(database) == before
    write(database)  # writable again: no longer held read-only

    # With both servers up, the drain goes through.
    call_command("servers", "drain", source_name, stdout=io.StringIO())
    database.refresh_from_db()
    assert database.server.name != source_name  # type: ignore[union-attr]
    assert on_server(source) == []
    write(database)


# A full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs, mounted for the test and unmounted after it."""
    # .ci/run installs with apt-get, as root: a full disk is tested there, never skipped.
    assert os.geteuid() == 0, "mounting a tmpfs needs root: run the suite as root (.ci/run)"
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_up(disk: Path, leave: int) -> None:
    """A ballast file, so that `leave` bytes stay free."""
    free = shutil.disk_usage(disk).free
    with open(disk / "ballast", "wb") as f:
        f.truncate(0)
        for _ in range((free - leave) // (1 << 20)):
            f.write(b"\0" * (1 << 20))


def used(disk: Path) -> int:
    return shutil.disk_usage(disk).used


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def attachments(database: Database, megabytes: int) -> None:
    """Files that do not compress: a backup of them is as large."""
    for _ in range(megabytes):
        filestore.store(database.physical_name, [os.urandom(1 << 20)])


def test_a_full_backup_disk_fails_the_backup_with_a_sentence_and_gives_the_space_back(
    small_disk: Path, owner: User, settings: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(small_disk)},
        },
    }
    database = filled(lifecycle.create("acme", by=owner))
    attachments(database, 6)
    before = dump(database), files(filestore.root(database.physical_name))
    fill_up(small_disk, leave=3 << 20)
    space = used(small_disk)

    backup = store.new_backup(database, Backup.Kind.DAILY)
    with pytest.raises(EngineError, match="The backup storage is full"):
        store.write_daily.call(backup.pk)
    failed = Activity.objects.get(kind="backup")
    assert failed.result == "failed"
    assert failed.reason == store.FULL
    assert files(small_disk) == ["ballast"]  # nothing half written
    assert used(small_disk) == space
    assert (dump(database), files(filestore.root(database.physical_name))) == before

    # With room again, the next one is made.
    (small_disk / "ballast").unlink()
    backup = store.new_backup(database, Backup.Kind.DAILY)
    store.write_daily.call(backup.pk)
    assert Backup.objects.get(pk=backup.pk).state == "ready"
    for backup in Backup.objects.all():
        store.discard(backup)


def test_a_full_data_disk_fails_a_restore_and_keeps_the_database_as_it_was(
    small_disk: Path, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite databases live on the small disk (the embedded default's data dir), the release's
    # template among them.
    engine = SQLiteEngine(small_disk)
    monkeypatch.setattr("tenantry.engines.fleet.sqlite_engine", lambda: engine)
    database = lifecycle.create("acme", by=owner)
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).bulk_create(  # type: ignore[attr-defined]
            Contact(name=f"Contact {i}", email=f"{'x' * 200}{i}@example.com") for i in range(20000)
        )
    saved = store.make(database, Backup.Kind.DAILY)
    with tenant.using(database) as db:  # a change since the backup, kept by the failure
        Contact.objects.using(db).filter(pk=1).update(name="Changed since")  # type: ignore[attr-defined]
    before = dump(database)
    fill_up(small_disk, leave=2 << 20)  # less than the restored database needs
    space, present = used(small_disk), files(small_disk)

    operation = restore.start(saved, database, by=owner)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert operation.state == "failed"
    readable(operation.error)
    assert "disk is full" in operation.error
    database.refresh_from_db()
    assert database.status == "active"
    assert dump(database) == before
    write(database)
    assert files(small_disk) == present  # the half-loaded database is gone
    assert used(small_disk) <= space
    # Its activity says why.
    entry = Activity.objects.filter(kind="restore").latest("pk")
    assert entry.result == "failed" and entry.reason == operation.error

    # With room again, the restore goes through.
    (small_disk / "ballast").unlink()
    operation = restore.start(saved, database, by=owner)
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    for backup in Backup.objects.all():
        store.discard(backup)
    lifecycle.drop_storage(database)
