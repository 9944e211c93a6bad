"""Restore on both engines: a backup made into a new database or over one, as a copy or as
moved, optionally neutralized; every check with its own sentence; a failure leaves nothing."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import OperationalError, connections, models

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.engines import filestore, postgresql, sqlite
from tenantry.engines.base import DatabaseHeld
from tenantry.engines.fleet import engine_for, sqlite_engine
from tenantry.operations.models import Operation
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tests.helpers import run_pending, signed_in


def tables(database: Database) -> list[type[models.Model]]:
    """Every table of the workspace app at the database's release; its identity (uuid) is
    compared on its own."""
    registry = releases.model(database.release, "Settings")._meta.apps
    workspace = registry.get_app_config("workspace").get_models()
    return [model for model in workspace if model.__name__ != "Settings"]


@pytest.fixture
def shop(engine_kind: str, owner: User) -> Database:
    database = lifecycle.create("shop", by=owner)
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).create(name="Ada Lovelace", notes="Analytical\nEngines")
        Contact.objects.using(db).create(name="O'Brien; DROP TABLE x;", notes="é ✓ \\N")
        Contact.objects.using(db).create(name="Line endings", notes="a\r\nb\rc\n;\nd;")
        ws.PaymentProvider.objects.using(db).create(name="Stripe", state="enabled")
    sha, size = filestore.store(database.physical_name, [b"%PDF invoice"])
    with tenant.using(database) as db:
        ws.Attachment.objects.using(db).create(name="invoice.pdf", sha256=sha, size=size)
    return database


def contents(database: Database) -> dict[str, Any]:
    """Every row of every workspace table (but the identity), and every file."""
    found: dict[str, Any] = {}
    with tenant.using(database) as db:
        for model in tables(database):
            found[model.__name__] = sorted(
                json.dumps(row, default=str, sort_keys=True)
                for row in model.objects.using(db).values()
            )
    root = filestore.root(database.physical_name)
    with tenant.using(database) as db:
        found["settings"] = list(
            ws.Settings.objects.using(db).values("created_at", "is_test_copy", "expires_at")
        )
    found["files"] = sorted(
        (str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()
    )
    return found


def identity(database: Database) -> ws.Settings:
    with tenant.using(database) as db:
        return ws.Settings.objects.using(db).get()


def restored(name: str) -> Database:
    run_pending()
    operation = Operation.objects.filter(kind="restore").order_by("pk").last()
    assert operation is not None and operation.state == "done", operation and operation.error
    return Database.objects.get(name=name)


def test_backup_then_restore_into_a_new_database_equals_the_original(
    shop: Database, owner: User
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    restore.start(backup, "shop-two", by=owner)
    copy = restored("shop-two")
    assert copy.status == "active" and copy.engine == shop.engine
    assert contents(copy) == contents(shop)
    assert copy.uuid != shop.uuid and identity(copy).uuid == copy.uuid
    assert copy.role_of(owner) == "admin"
    # As moved: the same identity.
    restore.start(backup, "shop-three", by=owner, as_copy=False)
    moved = restored("shop-three")
    assert moved.uuid == shop.uuid and identity(moved).uuid == shop.uuid


def test_restore_over_a_database_backs_it_up_first_and_swaps_at_the_end(
    shop: Database, owner: User
) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    before = contents(shop)
    with tenant.using(shop) as db:
        Contact = releases.model(shop.release, "Contact")
        Contact.objects.using(db).create(name="Added after the backup")
    after = contents(shop)
    old_physical = shop.physical_name
    restore.start(backup, shop, by=owner, as_copy=False)
    shop = restored("shop")
    assert shop.physical_name != old_physical
    assert not engine_for(shop).exists(old_physical)
    assert not filestore.root(old_physical).exists()
    assert contents(shop) == before
    saved = shop.backups.get(kind=Backup.Kind.BEFORE_RESTORE)  # type: ignore[attr-defined]
    restore.start(saved, shop, by=owner)
    assert contents(restored("shop")) == after


def test_no_write_reaches_the_replaced_database_after_the_swap(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that read the record before the swap writes into the replaced database:
    refused while it is held, then it is gone (the workspace's page runs the request again
    where the database now is). Were it let go before being dropped, the write would be lost
    with it."""
    backup = store.make(shop, Backup.Kind.DAILY)
    stale = Database.objects.get(pk=shop.pk)  # as a request found it
    Contact = releases.model(shop.release, "Contact")
    tried: list[str] = []
    advance = Operation.advance

    def write_when_removing(self: Operation, progress: int, step: str) -> None:
        if step == "Removing the replaced database":
            try:
                with tenant.using(stale) as db:
                    Contact.objects.using(db).create(name="Written after the swap")
                tried.append("written")
            except DatabaseHeld:
                tried.append("refused")
        advance(self, progress, step)

    monkeypatch.setattr(Operation, "advance", write_when_removing)
    restore.start(backup, shop, by=owner, as_copy=False)
    shop = restored("shop")
    assert tried == ["refused"]
    assert not engine_for(shop).exists(stale.physical_name)
    with pytest.raises(OperationalError), tenant.using(stale) as db:  # the page runs it again
        Contact.objects.using(db).create(name="Written after the drop")
    with tenant.using(shop) as db:
        assert not Contact.objects.using(db).filter(name__startswith="Written").exists()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_sqlite_session_waiting_since_before_the_hold_cannot_write_into_the_dropped_file(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened before the hold, a session waits up to the full busy timeout for the lock; it
    gets it once the restore lets go of the dropped file, and its write is refused there."""
    backup = store.make(shop, Backup.Kind.DAILY)
    early = sqlite3.connect(
        sqlite_engine().path(shop.physical_name), timeout=60, check_same_thread=False
    )
    early.execute("SELECT count(*) FROM workspace_contact").fetchone()  # its WAL opened
    outcome: list[str] = []

    def write() -> None:
        try:
            early.execute("BEGIN IMMEDIATE")  # waits for the hold's lock
            early.execute("UPDATE workspace_contact SET notes = 'Lost?'")
            early.execute("COMMIT")
            outcome.append("written")
        except sqlite3.Error as error:
            outcome.append(str(error))

    writer = threading.Thread(target=write)
    advance = Operation.advance

    def start_writing(self: Operation, progress: int, step: str) -> None:
        if step == "Removing the replaced database":
            writer.start()
            time.sleep(0.5)  # waiting for the lock
        advance(self, progress, step)

    monkeypatch.setattr(Operation, "advance", start_writing)
    restore.start(backup, shop, by=owner, as_copy=False)
    restored("shop")
    writer.join(timeout=30)
    early.close()
    assert outcome == [sqlite.DROPPED]


def test_neutralized_restore(shop: Database, owner: User) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    restore.start(backup, "shop-test", by=owner, neutralize=True)
    copy = restored("shop-test")
    assert copy.is_test_copy and identity(copy).is_test_copy
    with tenant.using(copy) as db:
        assert not ws.ScheduledJob.objects.using(db).filter(active=True).exists()
        assert not ws.MailServer.objects.using(db).filter(active=True).exists()


def test_users_linked_to_unknown_accounts_are_unlinked(
    shop: Database, owner: User, outsider: User
) -> None:
    with tenant.using(shop) as db:
        ws.User.objects.using(db).create(login="stranger", account_id=outsider.pk)
    backup = store.make(shop, Backup.Kind.DAILY)
    restore.start(backup, "shop-two", by=owner)
    copy = restored("shop-two")
    with tenant.using(copy) as db:
        linked = dict(ws.User.objects.using(db).values_list("login", "account_id"))
    assert linked["stranger"] is None and linked[owner.email] == owner.pk
    assert not Membership.objects.filter(database=copy, user=outsider).exists()


def test_a_restore_over_leaves_members_database_passwords_as_they_are(
    shop: Database, owner: User, member: User
) -> None:
    """A backup is what its uploader says: the database password it gives a member's user
    (a hash of the uploader's choice, here written into the database before the backup) would
    let the uploader sign in as that member. Each member keeps the one they have."""
    Membership.objects.create(database=shop, user=member, role=Membership.Role.USER)
    with tenant.using(shop) as db:
        ws.User.objects.using(db).create(
            login=member.email, account_id=member.pk, password=make_password("chosen by admin")
        )
        ws.User.objects.using(db).filter(account_id=owner.pk).update(
            password=make_password("the owner's then")
        )
    backup = store.make(shop, Backup.Kind.DAILY)
    with tenant.using(shop) as db:
        ws.User.objects.using(db).filter(account_id=member.pk).update(
            password=make_password("the member's own")
        )
        ws.User.objects.using(db).filter(account_id=owner.pk).update(password="")
    restore.start(backup, shop, by=owner, as_copy=False)
    shop = restored("shop")
    with tenant.using(shop) as db:
        passwords = dict(ws.User.objects.using(db).values_list("account_id", "password"))
    assert check_password("the member's own", passwords[member.pk])
    assert not check_password("chosen by admin", passwords[member.pk])
    assert passwords[owner.pk] == ""


# What a ZIP may be wrong with, each with its own sentence.


def zip_of(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    buffer.seek(0)
    return buffer


def members_of(backup: Backup) -> dict[str, bytes]:
    with store.open_file(backup) as f, zipfile.ZipFile(f) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_every_problem_has_its_own_sentence(shop: Database, owner: User) -> None:
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    manifest = json.loads(good["manifest.json"])
    sentences = set()

    def refused(data: io.BytesIO | bytes) -> str:
        file = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
        with pytest.raises(ValidationError) as caught:
            restore.inspect(file)
        sentences.add(caught.value.messages[0])
        return caught.value.messages[0]

    raw = zip_of(good).getvalue()
    assert "not a readable ZIP" in refused(raw[: len(raw) // 2])
    assert "not a Tenantry backup" in refused(zip_of({"dump.sql": b"x"}))
    newer = {**good, "manifest.json": json.dumps({**manifest, "format": 99}).encode()}
    assert "newer version of Tenantry" in refused(zip_of(newer))
    missing = {k: v for k, v in good.items() if not k.startswith("filestore/")}
    assert "incomplete" in refused(zip_of(missing))
    assert len(sentences) == 4

    def upload(files: dict[str, bytes]) -> Backup:
        return restore.keep_upload(zip_of(files), owner)

    release = {**good, "manifest.json": json.dumps({**manifest, "release": "9.0"}).encode()}
    with pytest.raises(ValidationError, match="release 9.0, which this platform does not know"):
        restore.start(upload(release), "shop-new", by=owner)
    other = "postgresql" if shop.engine == "sqlite" else "sqlite"
    engine = {**good, "manifest.json": json.dumps({**manifest, "engine": other}).encode()}
    with pytest.raises(ValidationError, match="restored on the engine it was made with"):
        restore.start(upload(engine), shop, by=owner)
    assert not Database.objects.filter(name="shop-new").exists()

    # A checksum that does not match: found by the worker, before anything changes.
    damaged = {**good, "dump.sql": good["dump.sql"].replace(b"Ada Lovelace", b"Ada Lovelacf")}
    before = contents(shop)
    restore.start(upload(damaged), shop, by=owner)
    restore.start(upload(damaged), "shop-new", by=owner)
    run_pending()
    for operation in Operation.objects.filter(kind="restore"):
        assert operation.state == "failed"
        assert operation.error == (
            "The backup is damaged: “dump.sql” does not match the checksum in its manifest."
        )
    assert not Database.objects.filter(name="shop-new").exists()
    assert contents(Database.objects.get(name="shop")) == before
    assert not shop.backups.filter(kind=Backup.Kind.BEFORE_RESTORE).exists()  # type: ignore[attr-defined]
    assert not Backup.objects.filter(kind=Backup.Kind.UPLOAD).exists()


def resealed(files: dict[str, bytes], dump: bytes) -> dict[str, bytes]:
    """The backup with another dump, its manifest updated to match (a well-formed ZIP)."""
    import hashlib

    manifest = json.loads(files["manifest.json"])
    manifest["files"]["dump.sql"] = {"size": len(dump), "sha256": hashlib.sha256(dump).hexdigest()}
    return {**files, "dump.sql": dump, "manifest.json": json.dumps(manifest).encode()}


def test_a_dump_that_fails_to_load_leaves_nothing_and_the_old_one_untouched(
    shop: Database, owner: User
) -> None:
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    broken = resealed(good, good["dump.sql"] + b"\nTHIS IS NOT SQL;\n")
    before, physical = contents(shop), shop.physical_name
    restore.start(restore.keep_upload(zip_of(broken), owner), shop, by=owner)
    restore.start(restore.keep_upload(zip_of(broken), owner), "shop-new", by=owner)
    run_pending()
    errors = set(Operation.objects.filter(kind="restore").values_list("error", flat=True))
    assert len(errors) == 1 and "dump could not be loaded" in errors.pop()
    shop.refresh_from_db()
    assert shop.physical_name == physical and contents(shop) == before
    assert not Database.objects.filter(name="shop-new").exists()
    assert set(Database.objects.values_list("physical_name", flat=True)) == {physical}
    if shop.engine == "sqlite":
        tenants = {p.name.split(".")[0] for p in engine_for(shop).root.iterdir()}  # type: ignore[attr-defined]
        assert {t for t in tenants if t.startswith("tn_")} == {physical}
    else:
        names = engine_for(shop).sizes()  # type: ignore[attr-defined]
        assert {n for n in names if n.startswith("tn_")} == {physical}


def test_a_dump_cannot_reach_beyond_its_database(
    shop: Database, owner: User, tmp_path: Path
) -> None:
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    target = tmp_path / "written-by-the-dump"
    if shop.engine == "sqlite":
        attacks = [
            f"ATTACH DATABASE '{target}' AS evil;\nCREATE TABLE evil.t(x);\n",
            f"VACUUM INTO '{target}';\n",
        ]
        # Accepted by SQLite, refused as a schema that is not the release's.
        later = [
            "CREATE TRIGGER evil AFTER INSERT ON workspace_contact BEGIN DELETE FROM "
            "workspace_user; END;\n",
            # Named like SQLite's own objects, which the schema check leaves out.
            "CREATE TRIGGER sqliteX AFTER INSERT ON workspace_contact BEGIN DELETE FROM "
            "workspace_user; END;\n",
        ]
    else:
        attacks = [
            f"\\! touch {target}\n",
            f"COPY (SELECT 1) TO PROGRAM 'touch {target}';\n",
            "CREATE ROLE evil SUPERUSER LOGIN;\n",
            "RESET ROLE; SET SESSION AUTHORIZATION postgres;\n",
        ]
        # Harmless while loading (as the throwaway role); would run later as the platform's
        # user: refused as a schema that is not the release's.
        later = [
            "CREATE FUNCTION public.evil() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$BEGIN COPY (SELECT 1) TO PROGRAM 'touch {target}'; RETURN NEW; END$$;\n"
            "CREATE TRIGGER evil BEFORE INSERT ON public.workspace_contact "
            "FOR EACH ROW EXECUTE FUNCTION public.evil();\n",
            "ALTER TABLE public.workspace_contact ALTER COLUMN notes "
            f"SET DEFAULT lo_export(0, '{target}');\n",
            "GRANT ALL ON public.workspace_user TO PUBLIC;\n",
        ]
    for attack in attacks + [f"-- appended\n{x}" for x in later]:
        appended = attack.startswith("-- appended")
        dump = (
            good["dump.sql"] + attack.encode() if appended else attack.encode() + good["dump.sql"]
        )
        restore.start(restore.keep_upload(zip_of(resealed(good, dump)), owner), "evil", by=owner)
        run_pending()
        operation = Operation.objects.get(kind="restore")
        assert operation.state == "failed", attack
        if appended:
            assert "schema was changed outside Tenantry" in operation.error
        assert not target.exists(), attack
        assert not Database.objects.filter(name="evil").exists()
        operation.delete()
    if shop.engine == "postgresql":
        server = engine_for(shop)
        with server.admin() as db:  # type: ignore[attr-defined]
            roles = db.execute("SELECT rolname FROM pg_roles WHERE rolname ~ 'evil|load'")
            assert roles.fetchall() == []


def test_a_dump_that_computes_is_stopped_with_a_sentence(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dump is tables and rows. One that runs a query (endless, or writing gigabytes from a
    few bytes) is refused on SQLite, and stopped on PostgreSQL once it outlasts its size."""
    if shop.engine == "sqlite":
        refused = "not authorized"
        attacks = [
            "CREATE TABLE z(x);\nINSERT INTO z WITH RECURSIVE c(i) AS "
            "(SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5) SELECT i FROM c;\n",
            "CREATE TABLE z(x);\nINSERT INTO z VALUES (zeroblob(1000));\n",
            "CREATE TABLE z(x);\nINSERT INTO z VALUES ('ab');\nUPDATE z SET x = x || x;\n",
        ]
    else:
        refused = "ran longer than a dump of its size needs"
        monkeypatch.setattr(postgresql, "LOAD_SECONDS", 1)
        attacks = ["SELECT pg_sleep(30);\n"]
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    for attack in attacks:
        dump = attack.encode() + good["dump.sql"]
        restore.start(restore.keep_upload(zip_of(resealed(good, dump)), owner), "evil", by=owner)
        started = time.monotonic()
        run_pending()
        operation = Operation.objects.get(kind="restore")
        assert operation.state == "failed" and refused in operation.error, attack
        assert time.monotonic() - started < 20
        assert not Database.objects.filter(name="evil").exists()
        operation.delete()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_sqlite_dump_whose_triggers_multiply_its_rows_cannot_fill_the_disk(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row inserted into `a` makes a row eight times as long in `b`, then in `c`..."""
    shop = lifecycle.create("shop", by=owner)
    monkeypatch.setattr(sqlite, "FILE_MARGIN", 1024 * 1024)
    grows = "BEGIN INSERT INTO {} VALUES (" + " || ".join(["new.x"] * 8) + "); END;\n"  # noqa: S608
    dump = "CREATE TABLE a(x);\nCREATE TABLE b(x);\nCREATE TABLE c(x);\nCREATE TABLE d(x);\n"
    dump += "CREATE TRIGGER a_grows AFTER INSERT ON a " + grows.format("b")
    dump += "CREATE TRIGGER b_grows AFTER INSERT ON b " + grows.format("c")
    dump += "CREATE TRIGGER c_grows AFTER INSERT ON c " + grows.format("d")
    dump += ("INSERT INTO a VALUES ('" + "x" * 1000 + "');\n") * 200  # 200 KB
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    upload = restore.keep_upload(zip_of(resealed(good, dump.encode())), owner)
    restore.start(upload, "evil", by=owner)
    run_pending()
    operation = Operation.objects.get(kind="restore")
    assert operation.state == "failed"
    assert "grew far larger than its dump" in operation.error
    assert not Database.objects.filter(name="evil").exists()
    assert not list(sqlite_engine().root.glob("*.partial"))


def test_an_attachment_cannot_name_a_file_outside_the_filestore(
    shop: Database, owner: User
) -> None:
    """A row the dump adds, naming the platform's secret key instead of a SHA-256, is refused
    at restore; and were one in a database, its download is a 404, never the file."""
    secret = str(settings.DATA_DIR / "secret_key")
    table = "public.workspace_attachment" if shop.engine == "postgresql" else "workspace_attachment"
    row = (  # the attacker's own SQL, written into the dump
        f"INSERT INTO {table} (name, sha256, size, mimetype, created_at) "  # noqa: S608
        f"VALUES ('key.txt', '{secret}', 1, 'text/plain', '2026-01-01');\n"
    )
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    dump = good["dump.sql"] + row.encode()
    restore.start(restore.keep_upload(zip_of(resealed(good, dump)), owner), "evil", by=owner)
    run_pending()
    operation = Operation.objects.get(kind="restore")
    assert operation.state == "failed"
    assert "attachments do not name their files by checksum" in operation.error
    assert not Database.objects.filter(name="evil").exists()

    with tenant.using(shop) as db:
        planted = ws.Attachment.objects.using(db).create(name="key.txt", sha256=secret, size=1)
    client = signed_in(shop, owner)
    response = client.get(f"/attachments/{planted.pk}/")
    assert response.status_code == 404
    assert settings.SECRET_KEY.encode() not in response.content


def test_a_moved_restore_over_keeps_the_identity(shop: Database, owner: User) -> None:
    backup = store.make(shop, Backup.Kind.DAILY)
    restore.start(backup, shop, by=owner, as_copy=True)
    copy = restored("shop")
    assert copy.uuid != shop.uuid and isinstance(copy.uuid, uuid.UUID)


def test_the_portal_lists_backups_and_restores_an_upload(shop: Database, owner: User) -> None:
    from tests.conftest import client_for

    backup = store.make(shop, Backup.Kind.DAILY)
    client = client_for(owner)
    page = client.get("/databases/shop/backups/").content.decode()
    assert f"/databases/shop/backups/{backup.pk}/download/" in page and "Daily" in page
    download = client.get(f"/databases/shop/backups/{backup.pk}/download/")
    data = b"".join(download.streaming_content)  # type: ignore[attr-defined]
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    upload = io.BytesIO(data)
    upload.name = "shop.zip"
    response = client.post(
        "/databases/restore/", {"file": upload, "name": "shop-up", "identity": "copy"}
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert contents(restored("shop-up")) == contents(shop)
    response = client.post(
        "/databases/restore/", {"file": io.BytesIO(b"nope"), "name": "shop-x", "identity": "copy"}
    )
    assert "not a readable ZIP" in response.content.decode()


def test_the_api_restores_a_stored_backup_and_refuses_clearly(shop: Database, owner: User) -> None:
    from tests.conftest import api

    backup = store.make(shop, Backup.Kind.DAILY)
    client = api(owner)
    listed = client.get("/api/v1/databases/shop/backups").json()["data"]
    assert [b["id"] for b in listed] == [backup.pk]
    response = client.post("/api/v1/databases/shop/restore", {"backup": backup.pk})
    assert response.status_code == 409 and "replace=true" in response.json()["detail"]
    response = client.post("/api/v1/databases/shop-api/restore", {"backup": backup.pk})
    assert response.status_code == 202, response.content
    assert contents(restored("shop-api")) == contents(shop)
    response = client.post(
        "/api/v1/databases/shop/restore", {"backup": backup.pk, "replace": "true"}
    )
    assert response.status_code == 202, response.content
    response = client.post("/api/v1/databases/shop-z/restore", {"file": io.BytesIO(b"zz")})
    assert response.status_code == 400 and "not a readable ZIP" in response.json()["detail"]


def test_a_sqlite_dump_cut_short_leaves_no_file(shop: Database, owner: User) -> None:
    if shop.engine != "sqlite":
        return  # psql's side is covered by the failing-load test above
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    cut = good["dump.sql"] + b"INSERT INTO workspace_contact(name) VALUES('never closed"
    restore.start(restore.keep_upload(zip_of(resealed(good, cut)), owner), "shop-cut", by=owner)
    run_pending()
    operation = Operation.objects.get(kind="restore")
    assert operation.error == "The SQLite dump ends in the middle of a statement."
    tenants = engine_for(shop).root  # type: ignore[attr-defined]
    assert [p.name for p in tenants.iterdir() if p.name.endswith(".partial")] == []
    assert not Database.objects.filter(name="shop-cut").exists()


# A crafted SQLite dump: read once whatever its lines, refused past a statement's limit or the
# load's allowance, logged in one line.

# A contact in the columns of release 1.1, the shop's (the latest published in the tests).
CONTACT = (
    b"INSERT INTO workspace_contact(name, email, phone, company, notes, created_at) "
    b"VALUES ('%s', '', '', '', '%s', '2026-01-01 00:00:00');\n"
)


def restore_dump(shop: Database, owner: User, dump: bytes, name: str) -> tuple[Operation, float]:
    """Upload the shop's backup with `dump` added to its dump through the API, as the attacker
    would, into a new database; the operation and the seconds the worker took."""
    from tests.conftest import api

    good = members_of(store.make(shop, Backup.Kind.DAILY))
    crafted = zip_of(resealed(good, good["dump.sql"] + dump))
    response = api(owner).post(f"/api/v1/databases/{name}/restore", {"file": crafted})
    assert response.status_code == 202, response.content
    started = time.monotonic()
    run_pending()
    took = time.monotonic() - started
    return Operation.objects.filter(kind="restore").latest("pk"), took


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_sqlite_statement_of_many_lines_ending_in_semicolons_is_read_once(
    shop: Database, owner: User
) -> None:
    """Each line ends in a semicolon inside a string: a load that checked the statement whole at
    each of them took minutes for these 400,000 lines (a ZIP of a few KB)."""
    lines = b"a;\n" * 400_000
    operation, took = restore_dump(shop, owner, b"INSERT INTO t VALUES ('" + lines, "shop-cut")
    assert operation.error == "The SQLite dump ends in the middle of a statement."
    assert took < 20
    operation, took = restore_dump(shop, owner, CONTACT % (b"long", lines), "shop-long")
    assert operation.state == "done" and took < 20
    copy = Database.objects.get(name="shop-long")
    with tenant.using(copy) as db:
        Contact = releases.model(copy.release, "Contact")
        assert Contact.objects.using(db).get(name="long").notes == lines.decode()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_sqlite_statement_or_value_past_the_limit_is_refused_in_one_line_of_log(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tenantry.operations.tasks")
    monkeypatch.setattr(sqlite, "STATEMENT_MAX", 1024 * 1024)
    long = CONTACT % (b"long", b"x" * 1024 * 1024)
    operation, _ = restore_dump(shop, owner, long, "shop-long")
    assert operation.error == sqlite.TOO_LONG
    assert "has a statement longer than 16 MB" in sqlite.TOO_LONG
    # Nor can a dump grow a value past it, by a trigger (SQLite's || is no function).
    grown = (
        b"CREATE TABLE a(x);\nCREATE TABLE b(x);\n"
        b"CREATE TRIGGER g AFTER INSERT ON a BEGIN "
        b"INSERT INTO b VALUES (new.x || new.x || new.x); END;\n"
        b"INSERT INTO a VALUES ('" + b"x" * 400_000 + b"');\n"
    )
    operation, _ = restore_dump(shop, owner, grown, "shop-grown")
    assert operation.error == "The SQLite dump could not be loaded: string or blob too big."
    assert not Database.objects.filter(name__in=["shop-long", "shop-grown"]).exists()
    # A refusal with its sentence is no error of ours: one line, no traceback.
    refusals = [r for r in caplog.records if r.name == "tenantry.operations.tasks"]
    assert [r.getMessage() for r in refusals] == [
        f"Operation {operation.pk - 1} refused: {sqlite.TOO_LONG}",
        f"Operation {operation.pk} refused: {operation.error}",
    ]
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_sqlite_load_is_stopped_once_it_outlasts_its_size(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement that runs long without a query: a delete whose trigger scans every row of
    another table, for every row it deletes."""
    monkeypatch.setattr(sqlite, "LOAD_SECONDS", 1)
    rows = b"INSERT INTO u VALUES (1);\n" * 10_000 + b"INSERT INTO v VALUES (1);\n" * 10_000
    dump = (
        b"CREATE TABLE u(y);\nCREATE TABLE v(z);\n" + rows
        + b"CREATE TRIGGER scan AFTER DELETE ON u BEGIN DELETE FROM v WHERE z < 0; END;\n"
        + b"DELETE FROM u;\n"
    )  # fmt: skip
    operation, took = restore_dump(shop, owner, dump, "shop-slow")
    assert operation.error == sqlite.OUTLASTED
    assert "ran longer than a dump of its size needs" in operation.error
    assert took < 20
    assert not Database.objects.filter(name="shop-slow").exists()


def test_what_a_dump_does_to_its_own_database_is_undone(shop: Database, owner: User) -> None:
    if shop.engine != "postgresql":
        return  # a SQLite file has no such settings
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    change = (
        "DO $$BEGIN EXECUTE format('ALTER DATABASE %I IS_TEMPLATE true CONNECTION LIMIT 0', "
        "current_database()); EXECUTE format('ALTER DATABASE %I SET search_path = nowhere', "
        "current_database()); END$$;\n"
        "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;\n"
    )
    dump = good["dump.sql"] + b"SELECT 1;\n" + change.encode()
    restore.start(restore.keep_upload(zip_of(resealed(good, dump)), owner), "shop-two", by=owner)
    copy = restored("shop-two")
    with engine_for(copy).admin() as db:  # type: ignore[attr-defined]
        row = db.execute(
            "SELECT datistemplate, datconnlimit, datallowconn, "
            "(SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = d.oid) "
            "FROM pg_database d WHERE datname = %s",
            [copy.physical_name],
        ).fetchone()
    assert row == (False, -1, True, 0)
    with tenant.using(copy) as db, connections[db].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_default_acl")
        assert cursor.fetchone() == (0,)
    assert contents(copy) == contents(shop)
    lifecycle.drop_storage(copy)
    assert not engine_for(copy).exists(copy.physical_name)


def patched(data: bytes, local: tuple[int, bytes], central: tuple[int, bytes]) -> bytes:
    """The ZIP with a header field set in every local and central record."""
    out = bytearray(data)
    for signature, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.find(signature)
        while at != -1:
            out[at + offset : at + offset + len(value)] = value
            at = out.find(signature, at + 4)
    return bytes(out)


def test_zips_it_cannot_read_or_unpack_get_their_own_sentences(
    shop: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = members_of(store.make(shop, Backup.Kind.DAILY))
    raw = zip_of(good).getvalue()
    sentences = []
    for data in (
        patched(raw, (6, b"\x01\x00"), (8, b"\x01\x00")),  # the "encrypted" flag
        patched(raw, (8, b"\x09\x00"), (10, b"\x09\x00")),  # Deflate64
        zip_of({**good, "manifest.json": b" " * (11 * 1024 * 1024)}).getvalue(),
    ):
        with pytest.raises(ValidationError) as caught:
            restore.inspect(io.BytesIO(data))
        sentences.append(caught.value.messages[0])
    assert "This ZIP is encrypted" in sentences[0]
    assert "packed in a way Tenantry cannot read" in sentences[1]
    assert sentences[2] == restore.NOT_A_BACKUP
    # More than the disk has free: refused before anything is unpacked.
    free = sum(len(v) for k, v in good.items() if k != "manifest.json") - 1
    monkeypatch.setattr(restore.shutil, "disk_usage", lambda path: shutil_usage(free))
    with pytest.raises(ValidationError, match="This backup unpacks to .* free here"):
        restore.inspect(zip_of(good))


def shutil_usage(free: int) -> Any:
    import shutil

    return shutil._ntuple_diskusage(free * 2, free, free)  # type: ignore[attr-defined]
