"""A NUL character (U+0000) in what a person or a program sends is refused with a sentence
and changes nothing: PostgreSQL's text cannot hold one, so on a PostgreSQL control plane
(TENANTRY_TEST_CONTROL=postgresql) a lookup or a write of it was a 500. Each channel is tried:
the portal's pages, the API, the `tenantry` command, a database's own host.

Uploaded files may hold any bytes: only text is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_tasks_db.models import DBTaskResult

from tenantry.accounts.models import User
from tenantry.backups.models import Backup
from tenantry.backups.restore import NOT_A_BACKUP
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database, Invitation
from tenantry.domains.models import Domain
from tenantry.support.models import Attachment, Ticket
from tenantry.workspace import releases, tenant
from tenantry.workspace.releases import LATEST
from tests.conftest import PASSWORD, api, database_records
from tests.helpers import control_db, signed_in, subscribed, tenantry

NAMED = "NUL character (U+0000)"
JSON = "application/json"


def state() -> list[Any]:
    """What a refused request must leave as it was."""
    return [
        sorted(Database.objects.values_list("name", "release", "status")),
        Activity.objects.count(),
        Ticket.objects.count(),
        Domain.objects.count(),
        Invitation.objects.count(),
        Backup.objects.count(),
        DBTaskResult.objects.count(),
    ]


def answering_500s(user: User | None = None, **headers: Any) -> Client:
    """A client that gets a 500 as a browser would, instead of the exception."""
    client = Client(raise_request_exception=False, **headers)
    if user is not None:
        client.force_login(user)
    return client


def api_client(user: User) -> Client:
    client = api(user)
    client.raise_request_exception = False
    return client


def backup_zip(path: Path, **manifest: Any) -> Path:
    """A ZIP shaped like a backup, with `manifest`'s values in its manifest.json."""
    dump = b"-- an empty dump\n"
    facts = {"sha256": hashlib.sha256(dump).hexdigest(), "size": len(dump)}
    manifest = {
        "format": 1, "database": "acme", "uuid": str(uuid.uuid4()), "release": LATEST,
        "engine": "sqlite", "files": {"dump.sql": facts},
    } | manifest  # fmt: skip
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("manifest.json", json.dumps(manifest))  # "\u0000" in the JSON
        zipped.writestr("dump.sql", dump)
    return path


@pytest.fixture
def acme(owner: User) -> Database:
    """A database record (no storage): enough for what is refused before it is reached."""
    database_records(owner, 1, "acme")
    return Database.objects.get(name="acme-0")


# The portal's pages


@pytest.mark.parametrize(
    "path",
    [
        "/databases/acme%00/users/",
        "/databases/acme-0%00/activity/",
        "/databases/acme%00/domains/",
        "/databases/acme%00/download/",
        "/subscriptions/SUB%00/",
        "/support/new/?database=acme-0%00",
        "/databases/acme-0/activity/?kind=%00",
        "/internal/tls/ask?domain=shop%00.example.com",
    ],
)
def test_a_nul_in_the_address_or_query_of_a_page_is_a_400(
    acme: Database, owner: User, path: str
) -> None:
    before = state()
    response = answering_500s(owner).get(path)
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert NAMED in response.content.decode()
    assert state() == before


def test_a_nul_in_a_posted_form_is_a_400_and_changes_nothing(acme: Database, owner: User) -> None:
    client = answering_500s(owner)
    before = state()
    posts = [
        ("/databases/acme-0/domains/", {"action": "verify", "domain": "shop\x00.example.com"}),
        ("/databases/acme-0/users/", {"action": "remove", "email": "member\x00@example.com"}),
        ("/databases/acme-0/rename/", {"name": "acme\x00"}),
        ("/support/new/", {"category": "technical", "subject": "Slow", "description": "\x00",
                           "database": "acme-0\x00"}),
    ]  # fmt: skip
    for path, data in posts:
        response = client.post(path, data)
        assert response.status_code == 400, path
        assert "in a form field" in response.content.decode()
    # A form with files (multipart), as the Contact support page posts it.
    upload = SimpleUploadedFile("trace.log", b"a log\n")
    fields = {"category": "technical", "subject": "Slow", "description": "Since Monday."}
    response = client.post(
        "/support/new/", fields | {"database": "acme\x00", "attachments": upload}
    )
    assert response.status_code == 400
    assert state() == before
    assert Database.objects.get(pk=acme.pk).name == "acme-0"


def test_uploaded_files_may_hold_nul_bytes(acme: Database, owner: User) -> None:
    upload = SimpleUploadedFile("dump.bin", b"\x00\x01binary\x00")
    fields = {"category": "technical", "subject": "Slow", "description": "Since Monday."}
    response = answering_500s(owner).post("/support/new/", fields | {"attachments": upload})
    assert response.status_code == 302
    assert Ticket.objects.get().subject == "Slow"
    with Attachment.objects.get().file.open() as stored:
        assert stored.read() == b"\x00\x01binary\x00"


def test_a_nul_in_a_header_is_a_400(acme: Database, owner: User) -> None:
    before = state()
    # allauth keeps each session's browser: the User-Agent was written to the control plane.
    response = answering_500s(owner, HTTP_USER_AGENT="Firefox\x00").get("/databases/")
    assert response.status_code == 400
    assert "in its User-Agent header" in response.content.decode()
    assert state() == before


def test_a_session_cookie_holding_a_nul_is_no_session(acme: Database) -> None:
    # The cookie parser decodes the octal escape: a NUL no HTTP server stops.
    client = answering_500s(HTTP_COOKIE='sessionid="abcdefgh\\000ijklmnop"')
    response = client.get("/databases/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# The API


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/databases/acme%00"),
        ("get", "/api/v1/databases/acme-0%00/activity"),
        ("get", "/api/v1/subscriptions/SUB%00"),
        ("delete", "/api/v1/databases/acme-0/users/member%00@example.com"),
        ("delete", "/api/v1/databases/acme-0/domains/shop%00.example.com"),
        ("get", "/api/v1/databases/acme-0/activity?kind=rename%00"),
        ("get", "/api/v1/databases?cursor=%00"),
    ],
)
def test_a_nul_in_the_address_or_query_of_the_api_is_a_400(
    acme: Database, owner: User, method: str, path: str
) -> None:
    client = api_client(owner)
    before = state()
    response = getattr(client, method)(path)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert NAMED in response.json()["detail"]
    assert state() == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/databases", {"name": "new\x00"}),
        ("patch", "/api/v1/databases/acme-0", {"name": "acme\x00"}),
        ("post", "/api/v1/databases/acme-0/duplicate", {"name": "copy\x00"}),
        ("post", "/api/v1/databases/acme-0/upgrade", {"release": "2.0\x00"}),
        ("post", "/api/v1/databases/acme-0/users", {"emails": ["bo\x00@example.com"]}),
        ("post", "/api/v1/databases/acme-0/domains", {"domain": "shop\x00.example.com"}),
        ("post", "/api/v1/support", {"subject": "Slow\x00", "description": "d",
                                     "category": "technical"}),
        ("post", "/api/v1/support", {"subject": "Slow", "description": "d",
                                     "category": "technical", "database": "acme-0\x00"}),
    ],
)  # fmt: skip
def test_a_nul_in_a_json_body_is_a_422_and_changes_nothing(
    acme: Database, owner: User, method: str, path: str, body: dict[str, Any]
) -> None:
    client = api_client(owner)
    before = state()
    # "\u0000" in the JSON text.
    response = getattr(client, method)(path, json.dumps(body), content_type=JSON)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "No text may hold a NUL character (U+0000)." in response.json()["detail"]
    assert state() == before  # not even a refusal in the activity log


def test_a_nul_in_a_subscription_change_is_a_422(acme: Database, owner: User) -> None:
    subscription = subscribed(acme, owner)
    client = api_client(owner)
    before = state()
    response = client.patch(
        f"/api/v1/subscriptions/{subscription.code}",
        json.dumps({"plan": "Premium\x00"}),
        content_type=JSON,
    )
    assert response.status_code == 422
    assert "NUL character" in response.json()["detail"]
    assert state() == before
    subscription.refresh_from_db()
    assert subscription.plan.name == "Standard"  # type: ignore[attr-defined]


def test_a_nul_in_a_support_form_of_the_api_is_a_422_and_its_files_may_hold_any_byte(
    acme: Database, owner: User
) -> None:
    client = api_client(owner)
    before = state()
    fields = {"subject": "Slow", "description": "Since Monday.", "category": "technical"}
    upload = SimpleUploadedFile("dump.bin", b"\x00binary\x00")
    response = client.post(
        "/api/v1/support", fields | {"description": "\x00", "attachments": upload}
    )
    assert response.status_code == 422
    assert "description: No text may hold a NUL character" in response.json()["detail"]
    assert state() == before
    upload.seek(0)
    assert client.post("/api/v1/support", fields | {"attachments": upload}).status_code == 201


def test_a_nul_in_an_idempotency_key_or_an_api_key_is_a_400(acme: Database, owner: User) -> None:
    client = api_client(owner)
    before = state()
    response = client.post(
        "/api/v1/databases",
        json.dumps({"name": "fresh"}),
        content_type=JSON,
        headers={"Idempotency-Key": "key\x00"},
    )
    assert response.status_code == 400
    assert "in its Idempotency-Key header" in response.json()["detail"]
    response = answering_500s().get("/api/v1/me", headers={"Authorization": "Bearer tnt_\x00"})
    assert response.status_code == 400
    assert "in its Authorization header" in response.json()["detail"]
    assert state() == before


def test_a_backup_whose_manifest_holds_a_nul_is_refused_by_the_portal_and_the_api(
    acme: Database, owner: User, tmp_path: Path
) -> None:
    before = state()
    for field in ("release", "engine"):  # both stored in the control plane
        path = backup_zip(tmp_path / "backup.zip", **{field: "1.1\x00"})
        with path.open("rb") as f:
            response = answering_500s(owner).post(
                "/databases/restore/", {"file": f, "name": "restored", "identity": "copy"}
            )
        assert response.status_code == 200
        assert response.context["form"].non_field_errors() == [NOT_A_BACKUP]
        with path.open("rb") as f:
            response = api_client(owner).post("/api/v1/databases/restored/restore", {"file": f})
        assert response.status_code == 400
        assert response.json()["detail"] == NOT_A_BACKUP
    assert state() == before


# A database's own host


def test_a_host_with_a_nul_is_no_database(acme: Database) -> None:
    for host in ("acme-0\x00.localhost", "shop\x00.example.com", "127.0.0.1\x00"):
        response = answering_500s(HTTP_HOST=host).get("/")
        assert response.status_code == 404
        assert "There is nothing at this address." in response.content.decode()


def test_a_database_page_refuses_a_nul_and_its_data_stays(owner: User, engine_kind: str) -> None:
    database = lifecycle.create("shop", by=owner)
    client = signed_in(database, owner)
    client.raise_request_exception = False
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        contacts = Contact.objects.using(db).count()
    response = client.post("/contacts/", {"name": "Ada\x00", "email": "ada@example.com"})
    assert response.status_code == 400
    assert "in a form field" in response.content.decode()
    assert client.get("/login/?next=/contacts/%00").status_code == 400
    with tenant.using(database) as db:
        assert Contact.objects.using(db).count() == contacts


# The `tenantry` command (an argument cannot hold a NUL: the system ends it there)


@pytest.mark.slow
def test_the_command_refuses_a_nul_from_a_file_or_standard_input(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert tenantry(data_dir, "migrate", "-v0").returncode == 0
    made = tenantry(data_dir, "accounts", "create", "op@example.com", "--password-stdin",
                    "--verified", stdin=PASSWORD)  # fmt: skip
    assert made.returncode == 0, made.stderr

    # The password on standard input: the sign-in form would never take it.
    result = tenantry(
        data_dir, "accounts", "create", "bo@example.com", "--password-stdin",
        stdin="correct horse\x00battery",
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "CommandError: The password holds a NUL character (U+0000): no password may."
    )

    # A backup ZIP whose manifest holds one.
    path = backup_zip(tmp_path / "backup.zip", release="1.1\x00")
    result = tenantry(
        data_dir, "db", "restore", "restored", "--file", str(path), "--owner", "op@example.com"
    )
    assert result.returncode != 0
    assert result.stderr.strip() == f"CommandError: {NOT_A_BACKUP}"

    with control_db(data_dir) as db:
        assert db.execute("SELECT email FROM accounts_user").fetchall() == [("op@example.com",)]
        for table in ("databases_database", "backups_backup", "databases_activity"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)  # noqa: S608
