"""The verbs on a database through the portal, the API and the CLI: the same refusals, and the
same activity entries (who, what, from where, how it ended); and the activity log itself."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import archive
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Membership
from tenantry.engines.base import EngineError
from tenantry.engines.sqlite import SQLiteEngine
from tenantry.operations.models import Operation
from tenantry.operations.sweep import sweep
from tests.conftest import api, client_for, reauthenticate
from tests.helpers import run_pending, subscribed

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
CHANNELS = ["portal", "api", "cli"]


class Channel:
    """One way in: each verb done as a person of that channel does it. Each returns what the
    person reads: the page, the API's sentence, or the CLI's output or error."""

    def __init__(self, name: str, owner: User) -> None:
        self.name, self.owner = name, owner
        if name == "portal":
            self.client = client_for(owner)
        elif name == "api":
            self.client = api(owner)

    def _cli(self, *args: str) -> str:
        out = io.StringIO()
        try:
            call_command("db", *args, stdout=out)
        except CommandError as error:
            return str(error)
        return out.getvalue()

    def _api(self, method: str, path: str, data: object = None) -> str:
        body = json.dumps(data) if data is not None else ""
        response = getattr(self.client, method)(
            "/api/v1" + path, body, content_type="application/json"
        )
        answer = response.json() if response.content else {}
        return str(answer.get("detail", answer)) if isinstance(answer, dict) else str(answer)

    def create(self, name: str) -> str:
        if self.name == "portal":
            return self.client.post("/databases/", {"name": name}, follow=True).content.decode()
        if self.name == "api":
            return self._api("post", "/databases", {"name": name})
        return self._cli("create", name, "--owner", self.owner.email)

    def rename(self, name: str, new: str) -> str:
        if self.name == "portal":
            page = self.client.post(f"/databases/{name}/rename/", {"name": new}, follow=True)
            return page.content.decode()
        if self.name == "api":
            return self._api("patch", f"/databases/{name}", {"name": new})
        return self._cli("rename", name, new)

    def duplicate(self, name: str, new: str) -> str:
        if self.name == "portal":
            form = {"name": new, "for_testing": "on"}
            return self.client.post(f"/databases/{name}/duplicate/", form).content.decode()
        if self.name == "api":
            return self._api("post", f"/databases/{name}/duplicate", {"name": new})
        return self._cli("duplicate", name, new)

    def delete(self, name: str) -> str:
        if self.name == "portal":
            reauthenticate(self.client)
            form = {"confirm": name}
            return self.client.post(f"/databases/{name}/delete/", form).content.decode()
        if self.name == "api":
            return self._api("delete", f"/databases/{name}")
        return self._cli("delete", name, "--yes")

    def invite(self, name: str, email: str) -> str:
        if self.name == "portal":
            form = {"action": "invite", "emails": email, "role": "user"}
            page = self.client.post(f"/databases/{name}/users/", form, follow=True)
            return page.content.decode()
        if self.name == "api":
            return self._api("post", f"/databases/{name}/users", {"emails": [email]})
        return self._cli("invite", name, email, "--by", self.owner.email)


def last(database: Database | None = None) -> Activity:
    entries = Activity.objects.all() if database is None else database.activity.all()  # type: ignore[attr-defined]
    found = entries.first()
    assert found is not None
    return found


def expected_actor(channel: str, owner: User) -> str:
    # The operator's CLI acts as Tenantry, except where it names the account (create, invite).
    return "Tenantry" if channel == "cli" else owner.email


@pytest.mark.parametrize("channel", CHANNELS)
def test_create_and_rename_write_the_same_entries_through_each_channel(
    engine_kind: str, transactional_db: None, owner: User, channel: str
) -> None:
    way = Channel(channel, owner)
    way.create("Shop" if channel != "portal" else "shop")  # the portal shows lowercase first
    shop = Database.objects.get(name="shop")
    entry = last(shop)
    assert (entry.kind, entry.result, entry.actor, entry.channel) == (
        "create", "done", owner.email, channel,
    )  # fmt: skip
    assert entry.ip == ("127.0.0.1" if channel != "cli" else None)
    assert entry.owner == owner and entry.database_uuid == shop.uuid

    way.rename("shop", "shop-two")
    entry = last(shop)
    assert (entry.kind, entry.detail, entry.result) == ("rename", "from shop to shop-two", "done")
    assert (entry.actor, entry.channel) == (expected_actor(channel, owner), channel)


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_refuses_with_the_same_sentence_and_records_it(
    engine_kind: str, transactional_db: None, owner: User, channel: str
) -> None:
    way = Channel(channel, owner)
    lifecycle.create("shop", by=owner)
    lifecycle.create("other", by=owner)
    shop = Database.objects.get(name="shop")

    assert "The name “www” is reserved. Choose another one." in way.create("www")
    assert "The name “other” is already taken. Choose another one." in way.create("other")
    assert "A database name has 3 to 63 characters." in way.create("a" * 64)
    assert Database.objects.count() == 2

    taken = "The name “other” is already taken. Choose another one."
    assert taken in way.rename("shop", "other")
    entry = last(shop)
    assert (entry.kind, entry.result, entry.reason) == ("rename", "refused", taken)
    assert entry.detail == "to other" and entry.channel == channel

    code = subscribed(shop, owner).code
    linked = f"“shop” is linked to the subscription {code}, which pays for it: a database"
    page = way.delete("shop")
    assert linked in page.replace("&#x27;", "'")
    entry = last(shop)
    assert (entry.kind, entry.result) == ("delete", "refused") and linked in entry.reason
    assert Database.objects.filter(name="shop").exists()


@pytest.mark.parametrize("channel", CHANNELS)
def test_duplicate_delete_and_invite_write_entries_that_take_the_operations_end(
    engine_kind: str, transactional_db: None, owner: User, channel: str
) -> None:
    way = Channel(channel, owner)
    shop = lifecycle.create("shop", by=owner)

    way.duplicate("shop", "shop-copy")
    run_pending()  # the CLI ran it already; the portal's and the API's wait for a worker
    entry = last(shop)
    assert (entry.kind, entry.detail, entry.result) == (
        "duplicate",
        "to shop-copy (test copy)",
        "done",
    )
    copy = Database.objects.get(name="shop-copy")
    assert (last(copy).kind, last(copy).detail) == ("create", "as a test copy of shop")

    way.invite("shop", "new@example.com")
    entry = last(shop)
    assert (entry.kind, entry.detail, entry.result) == ("invite", "new@example.com as user", "done")
    assert entry.actor == owner.email  # the CLI names the inviting administrator

    way.delete("shop-copy")
    run_pending()
    assert not Database.objects.filter(pk=copy.pk).exists()
    entry = Activity.objects.filter(database_uuid=copy.uuid, kind="delete").get()
    assert (entry.result, entry.database, entry.database_name) == ("done", None, "shop-copy")
    assert (entry.actor, entry.channel) == (expected_actor(channel, owner), channel)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_restore_into_a_new_database_is_recorded_through_each_channel(
    engine_kind: str, transactional_db: None, owner: User, channel: str, tmp_path: Path
) -> None:
    shop = lifecycle.create("shop", by=owner)
    zipped = tmp_path / "shop.zip"
    zipped.write_bytes(b"".join(archive.stream(shop)))
    if channel == "portal":
        client = client_for(owner)
        with zipped.open("rb") as file:
            form = {"file": file, "name": "shop-two", "identity": "copy"}
            assert client.post("/databases/restore/", form).status_code == 302
    elif channel == "api":
        with zipped.open("rb") as file:
            answer = api(owner).post("/api/v1/databases/shop-two/restore", {"file": file})
            assert answer.status_code == 202, answer.content
    else:
        call_command(
            "db", "restore", "shop-two", "--file", str(zipped), "--owner", owner.email,
            stdout=io.StringIO(),
        )  # fmt: skip
    run_pending()
    restored = Database.objects.get(name="shop-two")
    entry = last(restored)
    assert (entry.kind, entry.result, entry.channel) == ("restore", "done", channel)
    assert entry.detail.startswith("from a backup of ") and entry.detail.endswith("as a copy")
    assert entry.actor == owner.email  # the CLI names the new database's administrator


def test_a_failed_operation_s_entry_says_why(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = lifecycle.create("shop", by=owner)

    def broken(self: SQLiteEngine, source: str, copy: str) -> None:
        raise EngineError("The disk is full.")

    monkeypatch.setattr(SQLiteEngine, "clone", broken)
    lifecycle.start_duplicate(shop, "shop-copy", by=owner)
    run_pending()
    entry = shop.activity.get(kind="duplicate")  # type: ignore[attr-defined]
    assert (entry.result, entry.reason) == ("failed", "The disk is full.")


def test_an_entry_is_rolled_back_with_its_failed_action(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = lifecycle.create("shop", by=owner)
    before = Activity.objects.count()
    real_save = Database.save

    def failing_save(self: Database, *args: object, **kwargs: object) -> None:
        if self.status == Database.Status.DELETING:
            raise DatabaseError("the control database went away")
        real_save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Database, "save", failing_save)
    with pytest.raises(DatabaseError):
        lifecycle.start_delete(shop, by=owner)
    assert Activity.objects.count() == before  # the entry went with the change
    assert not Operation.objects.exists()
    assert Database.objects.get(pk=shop.pk).name == "shop"


def test_an_action_fails_when_its_entry_cannot_be_written(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = lifecycle.create("shop", by=owner)

    def failing_create(*args: object, **kwargs: object) -> None:
        raise DatabaseError("the activity table is gone")

    monkeypatch.setattr(Activity.objects, "create", failing_create)
    with pytest.raises(DatabaseError):
        lifecycle.rename(shop, "shop-two", by=owner)
    assert Database.objects.get(pk=shop.pk).name == "shop"


def test_administrators_read_the_log_in_the_portal_the_api_and_the_cli(
    engine_kind: str, owner: User, member: User, outsider: User
) -> None:
    shop = lifecycle.create("shop", by=owner)
    Membership.objects.create(database=shop, user=member, role=Membership.Role.USER)
    for n in range(60):
        lifecycle.rename(shop, f"shop-{n}", by=owner)
    lifecycle.rename(shop, "shop", by=owner)

    page = client_for(owner).get("/databases/shop/activity/").content.decode()
    assert "Activity of “shop”" in page and "from shop-59 to shop" in page
    assert "Page 1 of 2" in page and "from shop-0 to shop-1" not in page
    page = client_for(owner).get("/databases/shop/activity/?kind=create").content.decode()
    assert "Created" in page and "Renamed" not in page
    for person in (member, outsider):
        assert client_for(person).get("/databases/shop/activity/").status_code == 404

    key = api(owner)
    answer = key.get("/api/v1/databases/shop/activity?limit=5").json()
    assert answer["has_more"] and len(answer["data"]) == 5
    after = f"/api/v1/databases/shop/activity?limit=5&cursor={answer['next_cursor']}"
    second = key.get(after).json()["data"]
    assert second[0]["detail"] == "from shop-54 to shop-55"
    assert second[0]["channel"] == "cli" and second[0]["actor"] == owner.email
    for person in (member, outsider):
        assert api(person).get("/api/v1/databases/shop/activity").status_code == 404
    wrong = api(owner).get("/api/v1/databases/shop/activity?kind=nonsense")
    assert wrong.status_code == 422 and "kind" in wrong.json()["detail"]

    out = io.StringIO()
    call_command("db", "activity", "shop", "--kind", "create", stdout=out)
    assert out.getvalue().count("\n") == 1 and "\tcreate\t" in out.getvalue()


def test_a_deleted_database_s_entries_stay_with_its_owner_not_with_its_old_name(
    engine_kind: str, owner: User, outsider: User
) -> None:
    shop = lifecycle.create("shop", by=owner)
    uuid = shop.uuid
    lifecycle.start_delete(shop, by=owner)
    run_pending()
    lifecycle.create("shop", by=outsider)  # the free name, taken by someone else

    page = client_for(outsider).get("/databases/shop/activity/").content.decode()
    assert page.count('id="activity-') == 1  # its own creation, nothing of the old one
    assert str(uuid) not in client_for(outsider).get("/databases/deleted/").content.decode()
    page = client_for(owner).get("/databases/deleted/").content.decode()
    assert str(uuid) in page and "Deleted" in page and "Created" in page
    out = io.StringIO()
    call_command("db", "activity", str(uuid), stdout=out)  # an operator, by its uuid
    assert "\tdelete\t" in out.getvalue() and "\tcreate\t" in out.getvalue()


def test_the_sweep_acts_as_tenantry_and_removes_old_entries(
    engine_kind: str, owner: User, settings: object
) -> None:
    shop = lifecycle.create("shop", by=owner)
    operation = lifecycle.start_duplicate(shop, "shop-copy", by=owner)
    run_pending()
    copy = Database.objects.get(name="shop-copy")
    assert operation.target == copy
    later = timezone.now() + timedelta(days=16)  # the copy has expired
    sweep(later)
    entry = Activity.objects.get(database_uuid=copy.uuid, kind="delete")
    assert (entry.actor, entry.account, entry.channel) == ("Tenantry", None, "sweep")

    Activity.objects.filter(database=shop).update(created_at=timezone.now() - timedelta(days=401))
    sweep(timezone.now())
    assert not Activity.objects.filter(database=shop).exclude(kind="backup").exists()


def test_a_client_without_a_session_cannot_read_the_log(engine_kind: str, owner: User) -> None:
    lifecycle.create("shop", by=owner)
    response = Client().get("/databases/shop/activity/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
