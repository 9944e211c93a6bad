"""Upgrades on both engines: the data migrated, the backup first, the report, the test copy;
a failing release leaves the database as it was; writes during an upgrade wait and land;
what cannot be upgraded is refused with its sentence."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database
from tenantry.engines.base import DatabaseHeld
from tenantry.engines.fleet import engine_for
from tenantry.operations.models import Operation
from tenantry.operations.sweep import sweep
from tenantry.operations.tasks import run_operation
from tenantry.releases import models as releases
from tenantry.releases import upgrade
from tenantry.releases.models import Upgrade
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tenantry.workspace.releases import RELEASES, model
from tests.helpers import run_pending, subscribed
from tests.planted import MIGRATIONS, PLANTED


@pytest.fixture
def planted(settings: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.MIGRATION_MODULES = {"workspace": MIGRATIONS}  # type: ignore[attr-defined]
    for version, migration in PLANTED.items():
        monkeypatch.setitem(RELEASES, version, migration)


def publish(*versions: str) -> None:
    for version in versions:
        releases.publish(version, timezone.now() - timedelta(minutes=1))


def shop(owner: User) -> Database:
    """A database at 1.1 with contacts whose companies are text."""
    publish("1.0", "1.1")  # a transactional test starts with none recorded
    database = lifecycle.create("shop", by=owner)
    assert database.release == "1.1"
    contact = model("1.1", "Contact")
    with tenant.using(database) as db:
        contact.objects.using(db).bulk_create(
            [
                contact(name="Ada", email="ada@acme.com", company="Acme"),
                contact(name="Bob", email="bob@ACME.com", company=" Acme "),
                contact(name="Cy", email="cy@other.org", company="Other"),
                contact(name="Di", company=""),
            ]
        )
    return database


def dump(database: Database) -> bytes:
    """The database's dump, but pg_dump's random \\restrict key, and its sequences' positions:
    PostgreSQL never takes back a sequence's numbers, not even in a transaction rolled back."""
    lines = b"".join(engine_for(database).dump(database.physical_name)).splitlines()
    skipped = (b"\\restrict", b"\\unrestrict", b"SELECT pg_catalog.setval(")
    return b"\n".join(line for line in lines if not line.startswith(skipped))


def contacts(database: Database) -> list[tuple[str, str | None, str | None]]:
    contact = model(database.release, "Contact")
    with tenant.using(database) as db:
        rows = contact.objects.using(db).select_related("company").order_by("name")
        return [
            (c.name, c.company and c.company.name, getattr(c.company, "domain", None)) for c in rows
        ]


def test_a_production_upgrade_migrates_the_data_backs_up_first_and_reports(
    engine_kind: str, owner: User, mailoutbox: list
) -> None:
    database = shop(owner)
    publish("2.0", "2.1")
    operation = upgrade.start(database, by=owner)  # the latest published
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    database.refresh_from_db()
    assert database.release == "2.1"
    assert contacts(database) == [
        ("Ada", "Acme", "acme.com"),
        ("Bob", "Acme", "acme.com"),
        ("Cy", "Other", "other.org"),
        ("Di", None, None),
    ]
    engine = engine_for(database)
    engine.prepare_template("2.1")
    assert engine.schema(database.physical_name) == engine.schema(engine.template_name("2.1"))
    saved = Backup.objects.get(database=database, kind="before_upgrade")
    assert (saved.state, saved.release) == ("ready", "1.1")

    report = Upgrade.objects.get(operation=operation)
    assert (report.state, report.from_release, report.to_release) == ("succeeded", "1.1", "2.1")
    assert report.steps == ["0003_release_2_0", "0004_release_2_1"]
    rows = {row["table"]: (row["before"], row["after"]) for row in report.tables}
    assert rows["workspace_contact"] == (4, 4)
    assert rows["workspace_company"] == (None, 2)
    assert report.duration is not None
    entries = Activity.objects.filter(database=database, kind="upgrade")
    assert list(entries.values_list("result", "detail")) == [("done", "to 2.1")]
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert mailoutbox[0].subject == "[Tenantry] Upgrade of “shop” to 2.1: succeeded"
    assert "workspace_company: - → 2" in mailoutbox[0].body


def test_a_test_upgrade_upgrades_a_neutralized_copy_and_leaves_the_database(
    engine_kind: str, owner: User, mailoutbox: list
) -> None:
    database = shop(owner)
    publish("2.0")
    before = dump(database)
    operation = upgrade.start(database, "2.0", test=True, by=owner)
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    copy = Database.objects.get(name="shop-upgrade-2-0")
    assert (copy.release, copy.is_test_copy, copy.source) == ("2.0", True, database)
    assert copy.expires_at is not None
    assert copy.expires_at - timezone.now() > timedelta(days=14, hours=23)
    with tenant.using(copy) as db:
        assert not ws.MailServer.objects.using(db).get().active
        assert ws.Settings.objects.using(db).get().is_test_copy
    assert contacts(copy)[:2] == [("Ada", "Acme", None), ("Bob", "Acme", None)]
    database.refresh_from_db()
    assert database.release == "1.1"
    assert dump(database) == before
    report = Upgrade.objects.get(operation=operation)
    assert (report.state, report.test, report.copy) == ("succeeded", True, copy)
    assert mailoutbox[0].subject == "[Tenantry] Test upgrade of “shop” to 2.0: succeeded"
    assert copy.url in mailoutbox[0].body

    # Then the production upgrade, in one more step.
    upgrade.start(database, "2.0", by=owner)
    run_pending()
    database.refresh_from_db()
    assert database.release == "2.0"


def test_a_failing_release_leaves_the_database_as_it_was_and_names_the_step(
    engine_kind: str, owner: User, planted: None, mailoutbox: list
) -> None:
    database = shop(owner)
    publish("2.0", "2.1", "9.0")
    engine = engine_for(database)
    before = dump(database)
    operation = upgrade.start(database, "9.0", by=owner)
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "failed"
    assert operation.error == (
        "The upgrade to 9.0 failed at 0005_planted_failure: the planted release fails here. "
        "“shop” was left as it was, at release 1.1."
    )
    database.refresh_from_db()
    assert database.release == "1.1"
    # Every step of the one transaction rolled back, 2.0's and 2.1's too.
    assert dump(database) == before
    if engine_kind == "sqlite":
        with sqlite3.connect(engine.path(database.physical_name)) as db:  # type: ignore[attr-defined]
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    contact = model("1.1", "Contact")
    with tenant.using(database) as db:  # usable at its release
        contact.objects.using(db).create(name="Eve", company="Acme")
        assert contact.objects.using(db).filter(company="Acme").count() == 2  # Ada's, Eve's

    report = Upgrade.objects.get(operation=operation)
    assert report.state == "failed"
    assert report.steps == ["0003_release_2_0", "0004_release_2_1", "0005_planted_failure"]
    assert (report.failed_step, report.error) == (
        "0005_planted_failure",
        "the planted release fails here",
    )
    assert mailoutbox[-1].subject == "[Tenantry] Upgrade of “shop” to 9.0: failed"
    assert "It failed at the step 0005_planted_failure" in mailoutbox[-1].body
    entry = Activity.objects.get(database=database, kind="upgrade")
    assert (entry.result, entry.reason) == ("failed", operation.error)

    # A test upgrade to it fails the same way, and its copy goes.
    before = dump(database)
    operation = upgrade.start(database, "9.0", test=True, by=owner)
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "failed"
    assert "failed at 0005_planted_failure" in operation.error
    assert not Database.objects.filter(name="shop-upgrade-9-0").exists()
    assert dump(database) == before
    database.refresh_from_db()
    assert database.release == "1.1"


@pytest.mark.django_db(transaction=True)
def test_writes_during_an_upgrade_wait_for_it_and_are_kept(
    engine_kind: str, owner: User, planted: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "slow"
    marker.touch()
    monkeypatch.setenv("TENANTRY_TEST_SLOW", str(marker))
    database = shop(owner)
    publish("2.0", "2.1", "9.1")
    operation = upgrade.start(database, "9.1", by=owner)
    worker = threading.Thread(target=lambda: (run_operation.call(operation.pk), _closed()))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while Operation.objects.get(pk=operation.pk).step != "Running 0006_planted_slow":
            assert time.monotonic() < deadline, Operation.objects.get(pk=operation.pk).step
            time.sleep(0.05)
        # Reads go on, and see the database as it was; on PostgreSQL, those of a table a
        # migration changed wait for its lock, then get the "being upgraded" page.
        with tenant.using(database) as db:
            names = set(ws.Mail.objects.using(db).values_list("subject", flat=True))
        contact = model("1.1", "Contact")
        if engine_kind == "sqlite":
            with tenant.using(database) as db:
                assert contact.objects.using(db).filter(name="Ada").exists()
        else:
            held = pytest.raises(DatabaseHeld, match="“shop” is being upgraded to a new release")
            with held, tenant.using(database) as db:
                contact.objects.using(db).filter(name="Ada").exists()
        # A write waits for the upgrade's end (on SQLite, where the upgrade holds the file's
        # write lock; it ends a second later), then lands.
        threading.Timer(1, lambda: marker.unlink(missing_ok=True)).start()
        with tenant.using(database) as db:
            ws.Mail.objects.using(db).create(to="a@example.com", subject="during", body=".")
    finally:
        marker.unlink(missing_ok=True)
        worker.join(60)
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    database.refresh_from_db()
    assert database.release == "9.1"
    with tenant.using(database) as db:
        subjects = set(ws.Mail.objects.using(db).values_list("subject", flat=True))
        assert subjects == names | {"during"}
        assert model("9.1", "Contact").objects.using(db).filter(name="changed by 9.1").count() == 4


def _closed() -> None:
    for connection in connections.all():
        connection.close()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_upgrades_that_cannot_be_are_refused_with_a_sentence(engine_kind: str, owner: User) -> None:
    database = shop(owner)
    refused = [
        ("7.7", "There is no release 7.7."),
        ("2.0", "Release 2.0 is not published yet."),
        ("1.1", "“shop” is already at release 1.1."),
        ("1.0", "“shop” is at release 1.1: an upgrade cannot take it back to 1.0."),
    ]
    for release, sentence in refused:
        with pytest.raises(ValidationError) as error:
            upgrade.start(database, release, by=owner)
        assert (error.value.messages, error.value.code) == ([sentence], "invalid")
    publish("2.0")
    releases.publish("2.1")
    releases.deprecate("2.0")
    with pytest.raises(ValidationError, match="Release 2.0 is deprecated: choose a newer one."):
        upgrade.start(database, "2.0", by=owner)

    upgrade.start(database, "2.1", by=owner)  # queued, not run
    with pytest.raises(ValidationError, match="Another operation is already running") as busy:
        upgrade.start(database, "2.1", test=True, by=owner)
    assert busy.value.code == "busy"
    assert not Database.objects.filter(name="shop-upgrade-2-1").exists()
    # A request that fails meanwhile says why.
    held = pytest.raises(DatabaseHeld, match="“shop” is being upgraded to a new release")
    with held, tenant.using(database) as db:
        connections[db].cursor().execute("INSERT INTO workspace_nothing VALUES (1)")
    Operation.objects.update(state="failed")

    Database.objects.filter(pk=database.pk).update(expires_at=timezone.now())
    database.refresh_from_db()
    with pytest.raises(ValidationError, match="has expired") as expired:
        upgrade.start(database, "2.1", by=owner)
    assert expired.value.code == "expired"
    refusals = Activity.objects.filter(database=database, kind="upgrade", result="refused")
    assert refusals.count() == len(refused) + 3


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_the_sweep_reminds_before_the_deadline_then_upgrades_once(
    engine_kind: str, owner: User, member: User, planted: None, mailoutbox: list
) -> None:
    database = shop(owner)
    subscribed(database, owner)  # else its trial ends long before the deadline
    lifecycle.start_duplicate(database, "shop-test", by=owner)  # a test copy: never reminded
    run_pending()
    expired = lifecycle.create("gone", by=owner)
    Database.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    published = timezone.now() - timedelta(minutes=1)
    releases.publish("2.0", published)
    due = releases.add_months(published, 2)
    # Still there at the deadline (made in its last days).
    Database.objects.filter(name="shop-test").update(expires_at=due + timedelta(days=10))
    assert upgrade.offer(database, releases.Published()) == ("2.0", due)
    assert upgrade.offer(Database.objects.get(name="shop-test"), releases.Published()) == (
        "2.0",
        None,
    )

    def swept(at: timedelta) -> list[str]:
        mailoutbox.clear()
        sweep(due + at)
        return [m.subject for m in mailoutbox]

    reminder = "[Tenantry] “shop” must be upgraded to 2.0 by " + f"{due:%Y-%m-%d}"
    assert swept(-timedelta(days=31)) == []
    assert swept(-timedelta(days=29)) == [reminder]
    assert "in 30 days" in mailoutbox[0].body
    assert swept(-timedelta(days=20)) == []
    assert swept(-timedelta(days=2)) == [reminder]  # the 7 days' reminder, late
    assert "in 7 days" in mailoutbox[0].body
    assert swept(-timedelta(days=1, minutes=-1)) == [reminder]
    assert swept(-timedelta(hours=1)) == []

    # At the deadline: an automatic production upgrade, once.
    assert swept(timedelta(minutes=1)) == []
    operation = Operation.objects.get(kind="upgrade", state="queued")
    assert (operation.database, operation.created_by, operation.params["automatic"]) == (
        database,
        None,
        True,
    )
    run_pending()
    database.refresh_from_db()
    assert database.release == "2.0"
    assert mailoutbox[0].subject == "[Tenantry] Upgrade of “shop” to 2.0: succeeded"
    assert mailoutbox[0].to == [owner.email]  # its administrator: the sweep asked
    entry = Activity.objects.get(database=database, kind="upgrade")
    assert (entry.actor, entry.channel, entry.result) == ("Tenantry", "sweep", "done")
    assert Database.objects.get(name="shop-test").release == "1.1"
    assert Database.objects.get(name="gone").release == "1.1"

    # At the latest major, a newer minor is offered with no deadline: nothing is sent or done.
    releases.publish("2.1", published)
    assert upgrade.offer(database, releases.Published()) == ("2.1", None)
    assert swept(timedelta(days=90)) == []
    assert not Operation.objects.filter(kind="upgrade", state="queued").exists()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_failed_automatic_upgrade_is_reported_and_not_tried_again(
    engine_kind: str, owner: User, planted: None, mailoutbox: list
) -> None:
    database = shop(owner)
    subscribed(database, owner)
    published = timezone.now() - timedelta(minutes=1)
    publish("2.0", "2.1")
    releases.publish("9.0", published)  # a major that fails
    after = releases.add_months(published, 2) + timedelta(minutes=1)
    before = dump(database)
    upgrade.sweep(after)  # not the whole sweep: its jobs would change the database
    run_pending()
    database.refresh_from_db()
    assert database.release == "1.1"
    assert database.upgrade_failed_at is not None
    assert dump(database) == before
    assert mailoutbox[-1].subject == "[Tenantry] Upgrade of “shop” to 9.0: failed"
    assert mailoutbox[-1].to == [owner.email]
    assert "Contact support" in mailoutbox[-1].body
    upgrade.sweep(after + timedelta(hours=1))
    assert Operation.objects.filter(kind="upgrade").count() == 1
