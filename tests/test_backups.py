"""Stored backups: made daily by the sweep and kept 7 daily / 4 weekly / 3 monthly, abandoned
files cleared, an S3 bucket as the storage (moto's real server), who may list, download and
restore them, and the operator's CLI."""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from storages.backends.s3 import S3Storage

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.engines.fleet import engine_for
from tenantry.operations.due import backup_time
from tenantry.operations.models import Due, Operation
from tenantry.operations.sweep import sweep
from tenantry.settings import _storage
from tenantry.workspace import releases, tenant
from tests.conftest import api, client_for, make_account, reauthenticate
from tests.helpers import run_pending
from tests.smtp import HOST, free_port

DAILY_TASK = "tenantry.backups.store.write_daily"
# The tests that need no second engine: what they check does not depend on it.
sqlite_only = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def shop(engine_kind: str, owner: User, member: User) -> Database:
    """The owner's database, with a member who is a plain user, and one contact."""
    database = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    add_contact(database, "Ada Lovelace")
    return database


def contacts(database: Database) -> list[str]:
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        return sorted(Contact.objects.using(db).values_list("name", flat=True))


def add_contact(database: Database, name: str) -> None:
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).create(name=name)


def run_daily_backups() -> list[Backup]:
    """What the worker does: run each queued daily backup once. Every queued task names a
    backup being written, and every backup being written was queued."""
    queued = list(DBTaskResult.objects.filter(task_path=DAILY_TASK, status="READY"))
    ids = sorted(task.args_kwargs["args"][0] for task in queued)
    writing = Backup.objects.filter(state=Backup.State.WRITING, kind=Backup.Kind.DAILY)
    assert ids == sorted(writing.values_list("pk", flat=True))
    for backup_id in ids:
        store.write_daily.call(backup_id)
    DBTaskResult.objects.filter(pk__in=[task.pk for task in queued]).delete()
    return list(Backup.objects.filter(pk__in=ids))


def storage_root() -> Path:
    backups = store.storage()
    assert isinstance(backups, FileSystemStorage)
    return Path(backups.location)


def files_under(folder: str) -> set[str]:
    """The files of one folder of the backup storage, as paths relative to the storage."""
    root = storage_root()
    return {p.relative_to(root).as_posix() for p in (root / folder).rglob("*") if p.is_file()}


def zip_bytes(backup: Backup) -> bytes:
    with store.open_file(backup) as f:
        return f.read()


def operations() -> list[tuple[str, str]]:
    return list(Operation.objects.order_by("pk").values_list("kind", "state"))


# 1. Daily backups from the sweep.


def test_the_sweep_backs_up_every_live_database_once_a_day(shop: Database, owner: User) -> None:
    deleting = lifecycle.create("old-shop", by=owner)
    lifecycle.start_delete(deleting, by=owner)
    late = lifecycle.create("late-shop", by=owner)
    now = timezone.now()

    sweep(now)
    queued = Backup.objects.filter(state=Backup.State.WRITING)
    assert {b.database.name for b in queued} == {"shop", "late-shop"}  # type: ignore[union-attr]
    assert all(b.kind == Backup.Kind.DAILY and b.created_at == now for b in queued)
    # A database deleted once its backup is queued: the worker drops the backup.
    lifecycle.start_delete(late, by=owner)
    Database.objects.filter(pk=shop.pk).update(size_bytes=0)
    done = run_daily_backups()
    assert [b.database for b in done] == [shop]
    # The daily backup also refreshes the size shown in the manager.
    size = engine_for(shop).size(shop.physical_name)
    assert size > 0 and Database.objects.get(pk=shop.pk).size_bytes == size
    assert not Backup.objects.filter(database=late).exists()
    assert not Backup.objects.filter(database=deleting).exists()

    backup = Backup.objects.get(database=shop)
    assert backup.state == Backup.State.READY
    assert (backup.release, backup.engine) == (shop.release, shop.engine)
    assert files_under(shop.physical_name) == {backup.path}
    assert files_under(late.physical_name) == files_under(deleting.physical_name) == set()
    path = storage_root() / backup.path
    assert backup.size == path.stat().st_size > 0
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "No errors detected" in result.stdout, result.stdout
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("manifest.json"))["database"] == "shop"
        assert b"Ada Lovelace" in archive.read("dump.sql")

    # The next one at the database's own time of day (operations.due.next_backup), more than
    # 12 hours later: nothing before it.
    due_at = Due.objects.get(database=shop, job=Due.Job.BACKUP).due_at
    assert now + timedelta(hours=12) < due_at <= now + timedelta(hours=36)
    assert due_at - due_at.replace(hour=0, minute=0, second=0, microsecond=0) == backup_time(shop)
    sweep(due_at - timedelta(minutes=1))
    assert run_daily_backups() == []
    sweep(due_at)
    (second,) = run_daily_backups()
    assert second.database == shop and second.state == Backup.State.READY
    # The newest of each day is kept: the first too, unless both fell on one calendar day.
    same_day = backup.created_at.date() == second.created_at.date()
    kept = {second.path} if same_day else {backup.path, second.path}
    assert files_under(shop.physical_name) == kept
    assert not Backup.objects.exclude(database=shop).exists()


@sqlite_only
def test_a_failed_write_leaves_neither_file_nor_record(shop: Database) -> None:
    def broken() -> Iterator[bytes]:
        yield b"PK\x03\x04 the start of a ZIP"
        raise OSError("disk full")

    backup = store.new_backup(shop, Backup.Kind.DAILY)
    with pytest.raises(OSError, match="disk full"):
        store.write(backup, broken())
    assert not Backup.objects.exists()
    assert files_under(shop.physical_name) == set()


# 2. Retention.


def newest_per_period(days: list[date], count: int, period: Any) -> set[date]:
    """The newest day in each of the `count` newest periods that hold a backup."""
    newest: dict[Any, date] = {}
    for day in days:
        newest[period(day)] = max(day, newest.get(period(day), day))
    return set(sorted(newest.values())[-count:])


@sqlite_only
def test_four_months_of_daily_backups_keep_7_daily_4_weekly_and_3_monthly(
    shop: Database,
) -> None:
    start = datetime(2025, 1, 1, 3, 30, tzinfo=UTC)
    # Its backups' time of day is 03:30 (from its uuid), and the first is due at the start.
    Database.objects.filter(pk=shop.pk).update(uuid=uuid.UUID(int=3 * 3600 + 30 * 60))
    Due.objects.filter(database=shop, job=Due.Job.BACKUP).update(due_at=start)
    written: dict[str, date] = {}
    for n in range(120):
        now = start + timedelta(days=n)
        sweep(now)
        (backup,) = run_daily_backups()
        assert backup.state == Backup.State.READY and backup.created_at == now
        written[backup.path] = now.date()
        sweep(now + timedelta(hours=12))  # a second sweep the same day queues nothing
        assert run_daily_backups() == []

    days = sorted(written.values())
    assert (days[0], days[-1]) == (date(2025, 1, 1), date(2025, 4, 30))
    expected = (
        set(days[-7:])
        | newest_per_period(days, 4, lambda d: d.isocalendar()[:2])
        | newest_per_period(days, 3, lambda d: (d.year, d.month))
    )
    # Worked out by hand: 24 to 30 April (the newest of ISO weeks 18 and 17, and of April,
    # among them), the Sundays ending weeks 16 and 15, the last days of March and February.
    by_hand = {date(2025, 4, d) for d in range(24, 31)} | {
        date(2025, 4, 20), date(2025, 4, 13), date(2025, 3, 31), date(2025, 2, 28),
    }  # fmt: skip
    assert expected == by_hand and len(expected) == 11

    kept = Backup.objects.filter(database=shop)
    assert sorted(b.created_at.date() for b in kept) == sorted(expected)
    assert {b.kind for b in kept} == {Backup.Kind.DAILY}
    assert files_under(shop.physical_name) == {b.path for b in kept}
    pruned = [path for path, day in written.items() if day not in expected]
    assert len(pruned) == 120 - 11
    assert not any((storage_root() / path).exists() for path in pruned)


@sqlite_only
def test_backups_taken_before_a_restore_are_kept_30_days(shop: Database) -> None:
    now = timezone.now()
    old = store.make(shop, Backup.Kind.BEFORE_RESTORE)
    young = store.make(shop, Backup.Kind.BEFORE_RESTORE)
    Backup.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=30, minutes=1))
    Backup.objects.filter(pk=young.pk).update(created_at=now - timedelta(days=29, hours=23))
    assert (storage_root() / old.path).exists()

    sweep(now)
    (daily,) = run_daily_backups()
    remaining = set(Backup.objects.filter(database=shop).values_list("pk", flat=True))
    assert remaining == {young.pk, daily.pk}
    assert files_under(shop.physical_name) == {young.path, daily.path}


# 3. Abandoned files.


@sqlite_only
def test_the_sweep_removes_abandoned_backups_and_stale_uploads(shop: Database) -> None:
    now = timezone.now()

    def stored(database: Database | None, kind: str, **fields: Any) -> Backup:
        """A record with a half-written file, as a process that died leaves it."""
        backup = store.new_backup(database, kind, **fields)
        store.storage().save(backup.path, ContentFile(b"PK\x03\x04 half a ZIP"))
        return backup

    writing = Backup.Kind.DAILY
    dead = stored(shop, writing, heartbeat_at=now - store.STALE - timedelta(seconds=1))
    alive = stored(shop, writing, heartbeat_at=now - store.STALE + timedelta(seconds=30))
    never_run = stored(shop, writing, created_at=now - timedelta(days=1, minutes=1))
    just_queued = stored(shop, writing, created_at=now - timedelta(hours=1))
    old_upload = stored(None, Backup.Kind.UPLOAD, created_at=now - timedelta(days=1, minutes=1))
    new_upload = stored(None, Backup.Kind.UPLOAD, created_at=now - timedelta(hours=23))
    awaited = stored(None, Backup.Kind.UPLOAD, created_at=now - timedelta(days=2))
    uploads = [old_upload.pk, new_upload.pk, awaited.pk]
    Backup.objects.filter(pk__in=uploads).update(state="ready")
    # A restore still queued (no worker free for two days) keeps its upload.
    Operation.objects.create(
        kind="restore", database=shop, database_name="shop", params={"backup": awaited.pk}
    )

    sweep(now)
    kept = {alive, just_queued, new_upload, awaited}
    assert set(Backup.objects.all()) == kept  # and no new daily: one is under way
    for backup in (dead, never_run, old_upload):
        assert not (storage_root() / backup.path).exists()
    for backup in kept:
        assert (storage_root() / backup.path).exists()


# 4. An S3 bucket as the backup storage.


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, a real HTTP server speaking the S3 protocol."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "moto_server exited"
                assert time.monotonic() < deadline, "moto_server did not answer within 30 s"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass
class Bucket:
    client: Any
    name: str
    prefix: str

    def objects(self) -> dict[str, int]:
        """Every object in the bucket, with its size."""
        listing = self.client.list_objects_v2(Bucket=self.name)
        return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()  # type: ignore[no-any-return]


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[Bucket]:
    """A fresh bucket, and the backup storage pointed at it (as TENANTRY_BACKUP_STORAGE_URL
    would) for the duration of the test."""
    name = f"backups-{secrets.token_hex(4)}"
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="key", aws_secret_access_key="secret",
    )  # fmt: skip
    client.create_bucket(Bucket=name)
    url = f"s3://key:secret@{name}/prefix?endpoint_url={s3_endpoint}&region=us-east-1"
    assert isinstance(store.storage(), FileSystemStorage)
    with override_settings(STORAGES={**settings.STORAGES, "backups": _storage(url)}):
        # The setting_changed signal drops the storages made before: this one is new.
        s3 = store.storage()
        assert isinstance(s3, S3Storage)
        assert (s3.bucket_name, s3.location, s3.endpoint_url) == (name, "prefix", s3_endpoint)
        yield Bucket(client, name, "prefix/")
    assert isinstance(store.storage(), FileSystemStorage)


# s3transfer reads the backup as it is made in a thread of its own, which writes the heartbeat
# through its own connection: it must see what the test wrote.
@pytest.mark.usefixtures("transactional_db")
def test_daily_backups_in_a_bucket_are_downloaded_restored_and_pruned(
    shop: Database, owner: User, bucket: Bucket
) -> None:
    now = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
    Due.objects.filter(database=shop, job=Due.Job.BACKUP).update(due_at=now)
    sweep(now)
    (backup,) = run_daily_backups()
    key = bucket.prefix + backup.path
    assert backup.path.startswith(f"{shop.physical_name}/")
    assert bucket.objects() == {key: backup.size}
    data = bucket.read(key)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None

    # The portal and the API hand out a short-lived link to the bucket, not the bytes.
    for client, path in [
        (client_for(owner), f"/databases/shop/backups/{backup.pk}/download/"),
        (api(owner), f"/api/v1/databases/shop/backups/{backup.pk}/download"),
    ]:
        response = client.get(path)
        assert response.status_code == 302, response.content
        link = response["Location"]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        assert link.startswith(f"{bucket.client.meta.endpoint_url}/{bucket.name}/{key}?")
        # Signed with Signature Version 4, valid 5 minutes.
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == [
            "300"
        ], link
        assert query["response-content-disposition"] == [
            'attachment; filename="shop_2025-03-03_100000.zip"'
        ]
        with urllib.request.urlopen(link, timeout=10) as fetched:
            assert fetched.read() == data

    # Restored from the bucket into a new database.
    add_contact(shop, "Added after the backup")
    restore.start(backup, "shop-two", by=owner)
    run_pending()
    assert operations() == [("restore", "done")]
    assert contacts(Database.objects.get(name="shop-two")) == ["Ada Lovelace"]

    # A newer backup the same day: the older one is pruned from the bucket.
    newer = store.new_backup(shop, Backup.Kind.DAILY, created_at=now + timedelta(hours=1))
    store.write_daily.call(newer.pk)
    newer.refresh_from_db()
    assert newer.state == Backup.State.READY
    assert not Backup.objects.filter(pk=backup.pk).exists()
    assert bucket.objects() == {bucket.prefix + newer.path: newer.size}


@sqlite_only
@pytest.mark.usefixtures("transactional_db")
def test_an_upload_restored_through_the_api_passes_through_the_bucket(
    shop: Database, owner: User, bucket: Bucket
) -> None:
    data = zip_bytes(store.make(shop, Backup.Kind.DAILY))
    before = bucket.objects()
    upload = io.BytesIO(data)
    upload.name = "shop.zip"
    response = api(owner).post("/api/v1/databases/shop-up/restore", {"file": upload})
    assert response.status_code == 202, response.content
    (kept,) = Backup.objects.filter(kind=Backup.Kind.UPLOAD)
    assert kept.path.startswith("uploads/") and kept.state == Backup.State.READY
    assert set(bucket.objects()) - set(before) == {bucket.prefix + kept.path}
    assert bucket.read(bucket.prefix + kept.path) == data

    run_pending()
    assert operations() == [("restore", "done")]
    assert contacts(Database.objects.get(name="shop-up")) == ["Ada Lovelace"]
    assert not Backup.objects.filter(kind=Backup.Kind.UPLOAD).exists()
    assert bucket.objects() == before


# 5. Who may see, download and restore stored backups.


def state() -> dict[str, Any]:
    """What a refused request must leave as it was."""
    return {
        "databases": sorted(Database.objects.values_list("name", "physical_name", "status")),
        "backups": sorted(Backup.objects.values_list("pk", "path", "state")),
        "operations": operations(),
    }


@pytest.fixture
def saved(shop: Database) -> Backup:
    return store.make(shop, Backup.Kind.DAILY)


@sqlite_only
def test_only_administrators_see_download_and_restore_stored_backups(
    shop: Database, saved: Backup, owner: User, member: User, outsider: User
) -> None:
    data = zip_bytes(saved)
    pages = [
        "/databases/shop/backups/",
        f"/databases/shop/backups/{saved.pk}/download/",
        "/databases/shop/restore/",
        f"/databases/shop/restore/?backup={saved.pk}",
    ]
    api_reads = [
        "/api/v1/databases/shop/backups",
        f"/api/v1/databases/shop/backups/{saved.pk}/download",
    ]
    over = {"backup": saved.pk, "into": "over", "identity": "copy"}
    api_over = {"backup": saved.pk, "replace": "true"}
    for person, status in [(member, 403), (outsider, 404)]:
        before = state()
        web, key = client_for(person), api(person)
        for path in pages:
            assert web.get(path).status_code == status, (person, path)
        assert web.post("/databases/shop/restore/", over).status_code == status
        for path in api_reads:
            assert key.get(path).status_code == status, (person, path)
        assert key.post("/api/v1/databases/shop/restore", api_over).status_code == status
        # Nor into a new database of their own.
        response = key.post("/api/v1/databases/mine/restore", {"backup": saved.pk})
        assert response.status_code == 404, response.content
        response = web.post(
            f"/databases/shop/restore/?backup={saved.pk}", {"name": "mine", "identity": "copy"}
        )
        assert response.status_code == status
        assert state() == before, person

    web, key = client_for(owner), api(owner)
    page = web.get("/databases/shop/backups/").content.decode()
    assert f"/databases/shop/restore/?backup={saved.pk}" in page
    response = web.get(f"/databases/shop/backups/{saved.pk}/download/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data  # type: ignore[attr-defined]
    # Restoring over a database replaces it: the password again, first.
    response = web.get(f"/databases/shop/restore/?backup={saved.pk}")
    assert response["Location"].startswith("/accounts/reauthenticate/")
    reauthenticate(web)
    assert web.get("/databases/shop/restore/").status_code == 200
    page = web.get(f"/databases/shop/restore/?backup={saved.pk}").content.decode()
    assert f'name="backup" value="{saved.pk}"' in page
    assert [b["id"] for b in key.get("/api/v1/databases/shop/backups").json()["data"]] == [saved.pk]
    response = key.get(f"/api/v1/databases/shop/backups/{saved.pk}/download")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data  # type: ignore[attr-defined]
    response = key.post("/api/v1/databases/shop/restore", api_over)
    assert response.status_code == 202, response.content
    assert operations() == [("restore", "queued")]
    run_pending()
    assert operations() == [("restore", "done")]


@sqlite_only
def test_an_upload_over_a_database_may_outlast_the_password_asked_on_opening_its_page(
    shop: Database, saved: Backup, owner: User
) -> None:
    web = client_for(owner)
    reauthenticate(web)
    page = web.get("/databases/shop/restore/").content.decode()
    found = re.search(r'name="pass" value="([^"]+)"', page)
    assert found
    elsewhere = client_for(owner)  # another session's pass is not this one's
    reauthenticate(elsewhere)
    page = elsewhere.get("/databases/shop/restore/").content.decode()
    other = re.search(r'name="pass" value="([^"]+)"', page)
    assert other
    # The upload takes longer than the re-authentication lasts (5 minutes).
    session = web.session
    for record in session["account_authentication_methods"]:
        record["at"] -= 3600
    session.save()

    def post(restore_pass: str) -> Any:
        upload = io.BytesIO(zip_bytes(saved))
        upload.name = "shop.zip"
        form = {"file": upload, "into": "over", "identity": "copy", "pass": restore_pass}
        return web.post("/databases/shop/restore/", form)

    for refused in ("", "forged", other.group(1)):
        assert post(refused)["Location"].startswith("/accounts/reauthenticate/"), refused
    assert not Operation.objects.exists()
    response = post(found.group(1))
    assert response["Location"].startswith("/operations/")
    assert operations() == [("restore", "queued")]


@sqlite_only
def test_a_backup_of_another_database_or_an_upload_is_never_reachable(
    shop: Database, saved: Backup, owner: User
) -> None:
    rival = make_account("rival@example.com")
    theirs = store.make(lifecycle.create("rival", by=rival), Backup.Kind.DAILY)
    upload = restore.keep_upload(io.BytesIO(zip_bytes(saved)), owner)
    assert upload.state == Backup.State.READY and upload.database is None
    web, key = client_for(owner), api(owner)
    reauthenticate(web)
    before = state()
    for other in (theirs, upload):
        for path in [
            f"/databases/shop/backups/{other.pk}/download/",
            f"/databases/shop/restore/?backup={other.pk}",
            f"/databases/rival/backups/{other.pk}/download/",
        ]:
            assert web.get(path).status_code == 404, path
        for path in [
            f"/api/v1/databases/shop/backups/{other.pk}/download",
            f"/api/v1/databases/rival/backups/{other.pk}/download",
        ]:
            assert key.get(path).status_code == 404, path
        for bad in ("abc", "²", "9" * 30):  # "²" is a digit to str.isdigit()
            assert web.get(f"/databases/shop/restore/?backup={bad}").status_code == 404, bad
        over = {"backup": other.pk, "into": "over", "identity": "copy"}
        assert web.post("/databases/shop/restore/", over).status_code == 404
        new = {"backup": other.pk, "into": "new", "name": "stolen", "identity": "copy"}
        assert web.post("/databases/shop/restore/", new).status_code == 404
        replace = {"backup": other.pk, "replace": "true"}
        assert key.post("/api/v1/databases/shop/restore", replace).status_code == 404
        assert key.post("/api/v1/databases/stolen/restore", {"backup": other.pk}).status_code == 404
        listed = [b["id"] for b in key.get("/api/v1/databases/shop/backups").json()["data"]]
        assert other.pk not in listed
        assert f"backup-{other.pk}" not in web.get("/databases/shop/backups/").content.decode()
    assert state() == before


# 6. The operator's CLI.


def db(*args: str) -> str:
    out = io.StringIO()
    call_command("db", *args, stdout=out)
    return out.getvalue()


def test_db_backups_lists_the_stored_ones(shop: Database, saved: Backup, owner: User) -> None:
    before = store.make(shop, Backup.Kind.BEFORE_RESTORE)
    restore.keep_upload(io.BytesIO(zip_bytes(saved)), owner)
    store.new_backup(shop, Backup.Kind.DAILY)  # being written
    lines = db("backups", "shop").splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(before.pk), str(saved.pk)]
    assert lines[1].split("\t")[2:4] == ["daily", shop.release]
    assert lines[0].split("\t")[2] == "before_restore"
    with pytest.raises(CommandError, match="There is no database named nope."):
        db("backups", "nope")


# The CLI runs the restore in a thread of its own: it must see what the test wrote.
@pytest.mark.usefixtures("transactional_db")
def test_db_restore_makes_a_new_database_from_a_file_and_restores_over_one(
    shop: Database, owner: User, tmp_path: Path
) -> None:
    path = tmp_path / "shop.zip"
    db("backup", "shop", "-o", str(path))
    stored = store.make(shop, Backup.Kind.DAILY)
    add_contact(shop, "Added after the backups")

    with pytest.raises(CommandError, match="A new database needs an administrator"):
        db("restore", "shop-two", "--file", str(path))
    output = db("restore", "shop-two", "--file", str(path), "--owner", owner.email)
    assert "%]" in output and output.endswith("Restored shop-two.\n")
    copy = Database.objects.get(name="shop-two")
    assert copy.engine == shop.engine and copy.role_of(owner) == "admin"
    assert contacts(copy) == ["Ada Lovelace"]
    assert not Backup.objects.filter(kind=Backup.Kind.UPLOAD).exists()

    output = db("restore", "shop", "--backup", str(stored.pk), "--replace")
    assert output.endswith("Restored shop.\n")
    shop = Database.objects.get(name="shop")
    assert contacts(shop) == ["Ada Lovelace"]
    saved = Backup.objects.get(database=shop, kind=Backup.Kind.BEFORE_RESTORE)
    with store.open_file(saved) as f, zipfile.ZipFile(f) as archive:
        assert b"Added after the backups" in archive.read("dump.sql")
    # Neither an unknown id nor someone's upload (a restore under way) is a stored backup.
    upload = restore.keep_upload(io.BytesIO(path.read_bytes()), owner)
    for unknown in (999999, upload.pk):
        with pytest.raises(CommandError, match=f"There is no stored backup {unknown}."):
            db("restore", "shop", "--backup", str(unknown), "--replace")
    assert Backup.objects.get(pk=upload.pk).state == Backup.State.READY
    assert Operation.objects.filter(kind="restore").count() == 2


@pytest.mark.usefixtures("transactional_db")
def test_db_restore_refuses_a_damaged_file_and_leaves_no_database(
    shop: Database, owner: User, tmp_path: Path
) -> None:
    good = zip_bytes(store.make(shop, Backup.Kind.DAILY))
    before, uploads = state(), files_under("uploads")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CommandError) as caught:
        db("restore", "broken", "--file", str(cut), "--owner", owner.email)
    assert str(caught.value) == restore.NOT_A_ZIP
    assert state() == before

    # Well formed, but the dump is not the one its manifest describes: found by the worker.
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["dump.sql"] = members["dump.sql"].replace(b"Ada Lovelace", b"Ada Lovelacf")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(CommandError) as caught:
        db("restore", "broken", "--file", str(tampered), "--owner", owner.email)
    assert str(caught.value) == (
        "The backup is damaged: “dump.sql” does not match the checksum in its manifest."
    )
    assert not Database.objects.filter(name="broken").exists()
    assert not Backup.objects.filter(kind=Backup.Kind.UPLOAD).exists()
    assert files_under("uploads") == uploads


def test_a_daily_backup_that_fails_is_tried_again_a_day_later(shop: Database) -> None:
    if shop.engine != "postgresql":
        return  # a SQLite dump reads a file that is always there
    engine_for(shop).drop(shop.physical_name)  # the server lost it: pg_dump fails
    now = timezone.now()
    sweep(now)
    (backup,) = Backup.objects.filter(state=Backup.State.WRITING)
    with pytest.raises(Exception, match="dump failed"):
        store.write_daily.call(backup.pk)
    (failed,) = Backup.objects.all()
    assert failed.state == Backup.State.FAILED and files_under(shop.physical_name) == set()
    DBTaskResult.objects.all().delete()
    sweep(now + timedelta(hours=12))  # not a dump attempt every minute
    assert not Backup.objects.filter(state=Backup.State.WRITING).exists()
    due_at = Due.objects.get(database=shop, job=Due.Job.BACKUP).due_at
    assert due_at > now + timedelta(hours=12)  # the next day, at its own time
    sweep(due_at)
    assert Backup.objects.filter(state=Backup.State.WRITING).count() == 1
    sweep(now + timedelta(days=1, minutes=1))  # the failure's record goes once a day old
    assert not Backup.objects.filter(state=Backup.State.FAILED).exists()
    client = client_for(Database.objects.get(pk=shop.pk).created_by)  # type: ignore[arg-type]
    assert "Failed" not in client.get("/databases/shop/backups/").content.decode()


@sqlite_only
def test_the_retention_keeps_a_backup_that_a_restore_under_way_reads(shop: Database) -> None:
    now = timezone.now()
    older = store.make(shop, Backup.Kind.DAILY)
    Operation.objects.create(
        kind="restore", database=shop, database_name="shop", params={"backup": older.pk}
    )
    newer = store.new_backup(shop, Backup.Kind.DAILY, created_at=now + timedelta(minutes=1))
    store.write_daily.call(newer.pk)  # the newest of the day: the older one is not retained
    assert set(Backup.objects.values_list("pk", flat=True)) == {older.pk, newer.pk}
    Operation.objects.filter(kind="restore").update(state="done")
    store.prune(shop, now + timedelta(minutes=2))
    assert set(Backup.objects.values_list("pk", flat=True)) == {newer.pk}
