"""The upgrade through the API and the operator's CLI: started by an administrator, followed
as an operation whose `result` is the report; refusals with their sentence and code; what each
database is offered, and by when; `tenantry db upgrade` with its progress and report."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Membership
from tenantry.operations.models import Operation
from tenantry.releases import models as releases
from tenantry.releases import upgrade
from tenantry.releases.models import Upgrade, add_months
from tenantry.workspace import tenant
from tenantry.workspace.releases import RELEASES, model
from tests.conftest import PASSWORD, api
from tests.helpers import run_pending, tenantry
from tests.planted import MIGRATIONS, PLANTED

sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def planted(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only releases: 9.0 fails midway (tests/planted)."""
    settings.MIGRATION_MODULES = {"workspace": MIGRATIONS}
    for version, migration in PLANTED.items():
        monkeypatch.setitem(RELEASES, version, migration)


def publish(*versions: str, when: datetime | None = None) -> None:
    for version in versions:
        releases.publish(version, when or timezone.now() - timedelta(minutes=1))


def shop(owner: User) -> Database:
    """A database at 1.1 with two contacts of one company."""
    publish("1.0", "1.1")  # a transactional test starts with none recorded
    database = lifecycle.create("shop", by=owner)
    assert database.release == "1.1"
    contact = model("1.1", "Contact")
    with tenant.using(database) as db:
        contact._default_manager.using(db).bulk_create(
            [contact(name="Ada", company="Acme"), contact(name="Bob", company="Acme")]
        )
    return database


def post_upgrade(client: Client, name: str, body: Any, **headers: str) -> Any:
    return client.post(
        f"/api/v1/databases/{name}/upgrade", body, content_type="application/json", headers=headers
    )


# The API


@sqlite
def test_an_administrator_upgrades_and_the_operation_gives_the_report(
    engine_kind: str, owner: User
) -> None:
    database = shop(owner)
    publish("2.0", "2.1")
    key = api(owner)
    response = post_upgrade(key, "shop", {})  # the latest published
    assert response.status_code == 202, response.content
    operation = response.json()
    assert response["Location"] == operation["url"] == f"/api/v1/operations/{operation['id']}"
    assert response["Retry-After"] == "2"
    assert (operation["kind"], operation["state"], operation["target"]) == (
        "upgrade", "queued", None
    )  # fmt: skip
    report = operation["result"]
    assert (report["state"], report["from_release"], report["to_release"]) == (
        "running", "1.1", "2.1"
    )  # fmt: skip
    assert (report["steps"], report["duration_seconds"], report["test_copy"]) == ([], None, None)

    run_pending()
    done = key.get(operation["url"]).json()
    assert (done["state"], done["progress"], done["error"]) == ("done", 100, "")
    report = done["result"]
    upgraded = Upgrade.objects.get(operation=operation["id"])
    assert report == {
        "id": upgraded.pk,
        "url": f"{settings.PORTAL_URL}/upgrades/{upgraded.pk}/",
        "state": "succeeded",
        "test": False,
        "automatic": False,
        "from_release": "1.1",
        "to_release": "2.1",
        "steps": ["0003_release_2_0", "0004_release_2_1"],
        "failed_step": "",
        "error": "",
        "duration_seconds": report["duration_seconds"],
        "tables": report["tables"],
        "test_copy": None,
    }
    assert report["duration_seconds"] >= 0
    rows = {row["table"]: (row["before"], row["after"]) for row in report["tables"]}
    assert (rows["workspace_contact"], rows["workspace_company"]) == ((2, 2), (None, 1))
    shown = key.get("/api/v1/databases/shop").json()
    assert (shown["release"], shown["upgrade_to"], shown["upgrade_deadline"]) == ("2.1", None, None)
    entry = Activity.objects.get(database=database, kind="upgrade")
    assert (entry.channel, entry.actor, entry.result) == ("api", owner.email, "done")
    # Other kinds have no result.
    duplicated = key.post(
        "/api/v1/databases/shop/duplicate", {"name": "shop-copy"}, content_type="application/json"
    )
    assert duplicated.json()["result"] is None


@sqlite
def test_a_test_upgrade_upgrades_a_copy_and_names_it(engine_kind: str, owner: User) -> None:
    database = shop(owner)
    publish("2.0", "2.1")
    key = api(owner)
    response = post_upgrade(key, "shop", {"release": "2.0", "test": True})
    assert response.status_code == 202, response.content
    assert response.json()["target"] == "shop-upgrade-2-0"
    run_pending()
    report = key.get(response["Location"]).json()["result"]
    assert (report["state"], report["test"], report["test_copy"]) == (
        "succeeded", True, "shop-upgrade-2-0"
    )  # fmt: skip
    assert report["steps"] == ["0003_release_2_0"]
    copy = key.get("/api/v1/databases/shop-upgrade-2-0").json()
    assert (copy["release"], copy["is_test_copy"], copy["role"]) == ("2.0", True, "admin")
    # A copy is offered the newer release, with no date to meet.
    assert (copy["upgrade_to"], copy["upgrade_deadline"]) == ("2.1", None)
    database.refresh_from_db()
    assert database.release == "1.1"


@sqlite
def test_a_user_gets_403_and_an_outsider_404_and_nothing_starts(
    engine_kind: str, owner: User, member: User, outsider: User
) -> None:
    database = shop(owner)
    Membership.objects.create(database=database, user=member, role=Membership.Role.USER)
    publish("2.0")
    response = post_upgrade(api(member), "shop", {})
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only the database's administrators can do this.",
        "code": "forbidden",
    }
    response = post_upgrade(api(outsider), "shop", {})
    assert response.status_code == 404
    assert response.json() == {"detail": "No database “shop”.", "code": "not_found"}
    assert not Operation.objects.exists() and not Upgrade.objects.exists()
    # The member still sees what the database is offered.
    shown = api(member).get("/api/v1/databases/shop").json()
    assert shown["upgrade_to"] == "2.0" and shown["role"] == "user"


@sqlite
def test_refusals_answer_their_sentence_and_code_and_change_nothing(
    engine_kind: str, owner: User
) -> None:
    database = shop(owner)
    key = api(owner)

    def refused(body: Any, status: int, detail: str, code: str) -> None:
        response = post_upgrade(key, "shop", body)
        assert response.status_code == status, (body, response.content)
        assert response.json() == {"detail": detail, "code": code}, body

    refused({"release": "7.7"}, 400, "There is no release 7.7.", "invalid")
    refused({"release": "2.0"}, 400, "Release 2.0 is not published yet.", "invalid")
    refused({"release": "1.1"}, 400, "“shop” is already at release 1.1.", "invalid")
    refused(
        {"release": "1.0"},
        400,
        "“shop” is at release 1.1: an upgrade cannot take it back to 1.0.",
        "invalid",
    )
    refused({}, 400, "“shop” is already at release 1.1.", "invalid")  # 1.1 is the latest
    response = post_upgrade(key, "shop", {"test": "maybe"})
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    assert post_upgrade(key, "shop", {"release": "9" * 30}).status_code == 422

    publish("2.0")
    releases.publish("2.1")
    releases.deprecate("2.0")
    refused({"release": "2.0"}, 400, "Release 2.0 is deprecated: choose a newer one.", "invalid")

    duplicate = key.post(
        "/api/v1/databases/shop/duplicate", {"name": "shop-copy"}, content_type="application/json"
    )
    assert duplicate.status_code == 202
    response = post_upgrade(key, "shop", {"test": True})
    assert (response.status_code, response["Retry-After"]) == (409, "2")
    assert response.json() == {
        "detail": "Another operation is already running on “shop”. Wait for it to finish.",
        "code": "busy",
    }
    run_pending()

    Database.objects.filter(pk=database.pk).update(expires_at=timezone.now())
    response = post_upgrade(key, "shop", {})
    assert (response.status_code, response.json()["code"]) == (400, "expired")
    assert "has expired" in response.json()["detail"]

    assert not Operation.objects.filter(kind="upgrade").exists()
    assert not Upgrade.objects.exists()
    assert not Database.objects.filter(name__startswith="shop-upgrade").exists()
    database.refresh_from_db()
    assert database.release == "1.1"
    entries = Activity.objects.filter(database=database, kind="upgrade")
    assert set(entries.values_list("result", flat=True)) == {"refused"}


@sqlite
def test_each_database_says_what_it_is_offered_and_by_when(engine_kind: str, owner: User) -> None:
    old = shop(owner)
    key = api(owner)
    shown = key.get("/api/v1/databases/shop").json()
    assert (shown["upgrade_to"], shown["upgrade_deadline"], shown["upgrade_failed"]) == (
        None, None, False
    )  # fmt: skip

    # Below the latest major: the newest release, due two months after the major came out.
    # Whole seconds: the API gives times to the millisecond.
    major_out = (timezone.now() - timedelta(days=3)).replace(microsecond=0)
    publish("2.0", when=major_out)
    lifecycle.create("mid", by=owner)  # at 2.0
    due = add_months(major_out, 2)
    shown = key.get("/api/v1/databases/shop").json()
    assert shown["upgrade_to"] == "2.0"
    assert datetime.fromisoformat(shown["upgrade_deadline"]) == due

    # A newer minor of the latest major: offered, with no date to meet.
    publish("2.1")
    lifecycle.create("new", by=owner)  # at 2.1, the latest
    listed = {d["name"]: d for d in key.get("/api/v1/databases").json()["data"]}
    offers = {name: (d["upgrade_to"], d["upgrade_deadline"]) for name, d in listed.items()}
    assert offers == {
        "mid": ("2.1", None),
        "new": (None, None),
        "shop": ("2.1", offers["shop"][1]),
    }
    assert datetime.fromisoformat(offers["shop"][1]) == due  # still the major's date

    # An automatic upgrade that failed says so (the sweep sets it).
    Database.objects.filter(pk=old.pk).update(upgrade_failed_at=timezone.now())
    assert key.get("/api/v1/databases/shop").json()["upgrade_failed"] is True

    # The releases are read once for a page, however many databases it holds.
    with CaptureQueriesContext(connection) as queries:
        assert len(key.get("/api/v1/databases").json()["data"]) == 3
    read = [q for q in queries.captured_queries if '"releases_release"' in q["sql"]]
    assert len(read) == 1, read


@sqlite
def test_an_upgrade_retried_with_its_idempotency_key_starts_once(
    engine_kind: str, owner: User
) -> None:
    shop(owner)
    publish("2.0")
    key = api(owner)
    first = post_upgrade(key, "shop", {"release": "2.0"}, **{"Idempotency-Key": "up-shop-2-0"})
    assert first.status_code == 202, first.content
    again = post_upgrade(key, "shop", {"release": "2.0"}, **{"Idempotency-Key": "up-shop-2-0"})
    assert (again.status_code, again.content) == (202, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert Operation.objects.filter(kind="upgrade").count() == Upgrade.objects.count() == 1
    # Without the key, a retry is refused: the first is still running.
    assert post_upgrade(key, "shop", {"release": "2.0"}).status_code == 409


@sqlite
def test_a_failed_automatic_upgrade_shows_in_its_report_and_on_the_database(
    engine_kind: str, owner: User, planted: None
) -> None:
    database = shop(owner)
    publish("2.0", "2.1", "9.0")
    operation = upgrade.start(database, "9.0", by=None, automatic=True)  # as the sweep does
    run_pending()
    key = api(owner)
    answer = key.get(f"/api/v1/operations/{operation.pk}").json()
    assert answer["state"] == "failed"
    report = answer["result"]
    assert (report["state"], report["automatic"], report["failed_step"], report["error"]) == (
        "failed", True, "0005_planted_failure", "the planted release fails here"
    )  # fmt: skip
    assert report["steps"][-1] == "0005_planted_failure"
    shown = key.get("/api/v1/databases/shop").json()
    assert (shown["release"], shown["upgrade_failed"]) == ("1.1", True)
    assert "\tupgrade to 9.0 by " in db("list") and "; automatic upgrade failed" in db("list")


def test_the_api_s_upgrade_enum_is_the_model_s_choices() -> None:
    from tenantry.api import schemas

    assert {state.value for state in schemas.UpgradeState} == set(Upgrade.State.values)


# The operator's CLI


def db(*args: str) -> str:
    out = io.StringIO()
    call_command("db", *args, stdout=out)
    return out.getvalue()


# The CLI runs the upgrade in a thread of its own: it must see what the test wrote.
@sqlite
@pytest.mark.usefixtures("transactional_db")
def test_db_upgrade_shows_progress_then_the_report(engine_kind: str, owner: User) -> None:
    database = shop(owner)
    when = timezone.now() - timedelta(days=1)
    publish("2.0", "2.1", when=when)
    assert f"\tupgrade to 2.1 by {add_months(when, 2):%Y-%m-%d}" in db("list")

    output = db("upgrade", "shop").splitlines()
    report = Upgrade.objects.get()
    # Progress lines as the terminal sampled them (a fast upgrade may show only its end).
    progress = [line for line in output if line.startswith("[")]
    assert progress and progress[-1] == "[100%] Done"
    summary = output[len(progress) :]
    assert summary[0].startswith("Upgrade of shop to 2.1: succeeded in ")
    assert summary[1:] == [
        "Steps: 0003_release_2_0, 0004_release_2_1.",
        "Rows per table (before → after):",
        *[
            f"  {row['table']}: {'-' if row['before'] is None else row['before']} → {row['after']}"
            for row in report.tables
        ],
        f"Report: {settings.PORTAL_URL}/upgrades/{report.pk}/",
    ]
    assert "  workspace_contact: 2 → 2" in summary and "  workspace_company: - → 1" in summary
    database.refresh_from_db()
    assert database.release == "2.1"
    assert len(db("list").splitlines()[0].split("\t")) == 5  # at the latest: no note
    entry = Activity.objects.get(database=database, kind="upgrade")
    assert (entry.channel, entry.actor, entry.result) == ("cli", "Tenantry", "done")


@sqlite
@pytest.mark.usefixtures("transactional_db")
def test_db_upgrade_test_upgrades_a_copy_and_names_it(engine_kind: str, owner: User) -> None:
    database = shop(owner)
    publish("2.0", "2.1")
    output = db("upgrade", "shop", "--release", "2.0", "--test")
    copy = Database.objects.get(name="shop-upgrade-2-0")
    assert "Test upgrade of shop to 2.0: succeeded in " in output
    assert "Steps: 0003_release_2_0.\n" in output
    assert f"Test copy: shop-upgrade-2-0 at {copy.url}\n" in output
    assert copy.url == "http://shop-upgrade-2-0.localhost:8000"
    assert copy.release == "2.0" and copy.is_test_copy
    database.refresh_from_db()
    assert database.release == "1.1"


@sqlite
@pytest.mark.usefixtures("transactional_db")
def test_db_upgrade_refuses_with_a_sentence_and_reports_a_failure(
    engine_kind: str, owner: User, planted: None
) -> None:
    shop(owner)
    with pytest.raises(CommandError, match="^“shop” is already at release 1.1.$"):
        db("upgrade", "shop", "--release", "1.1")
    with pytest.raises(CommandError, match="^There is no release 7.7.$"):
        db("upgrade", "shop", "--release", "7.7")
    with pytest.raises(CommandError, match="^There is no database named nope.$"):
        db("upgrade", "nope")
    assert not Operation.objects.exists()

    publish("2.0", "2.1", "9.0")
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("db", "upgrade", "shop", "--release", "9.0", stdout=out)
    assert str(failed.value) == (
        "The upgrade to 9.0 failed at 0005_planted_failure: the planted release fails here. "
        "“shop” was left as it was, at release 1.1."
    )
    output = out.getvalue()
    assert "Upgrade of shop to 9.0: failed in " in output
    assert "Steps: 0003_release_2_0, 0004_release_2_1, 0005_planted_failure.\n" in output
    assert "Rows per table" not in output and "/upgrades/" in output


@pytest.mark.slow
def test_tenantry_db_upgrade_exits_0_on_success_and_non_zero_with_a_sentence(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    assert tenantry(data_dir, "migrate", "-v0").returncode == 0
    made = tenantry(
        data_dir, "accounts", "create", "op@example.com", "--password-stdin", "--verified",
        stdin=PASSWORD,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert tenantry(data_dir, "db", "create", "shop", "--owner", "op@example.com").returncode == 0
    assert tenantry(data_dir, "releases", "publish", "2.0").returncode == 0

    result = tenantry(data_dir, "db", "upgrade", "shop")
    assert result.returncode == 0, result.stderr
    assert "[100%] Done\nUpgrade of shop to 2.0: succeeded in " in result.stdout

    result = tenantry(data_dir, "db", "upgrade", "shop")
    assert result.returncode != 0
    assert result.stderr.strip() == "CommandError: “shop” is already at release 2.0."
