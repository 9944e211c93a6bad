"""Support requests through the REST API: opened about one of the account's databases (its
details read from the record, never from the client), with files, replied to and closed; and
every other account kept out of them."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pytest_django.fixtures import Settings

from tenantry.accounts.models import User
from tenantry.databases.models import Database, Membership
from tenantry.support import verbs
from tenantry.support.models import Attachment, Message, Ticket
from tests.conftest import api, database_records, make_account, run_tasks

JSON = "application/json"
# Where the verbs store a file: a name of theirs, never the customer's.
STORED = re.compile(r"\d{4}/\d{2}/[0-9a-f]{32}(\.[a-z0-9]+)?")


def open_json(client: Client, **fields: Any) -> Any:
    body = {
        "subject": "The import stopped",
        "description": "Since Monday.",
        "category": "technical",
    }
    return client.post("/api/v1/support", body | fields, content_type=JSON)


def open_form(client: Client, files: list[Any], **fields: Any) -> Any:
    body = {
        "subject": "The import stopped",
        "description": "Since Monday.",
        "category": "technical",
    }
    return client.post("/api/v1/support", {**body, **fields, "attachments": files})


def file(name: str, content: bytes = b"a line of the log\n") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body written by hand: Django's test client would take the folders off the
    file names itself, and a client that does not is what this is about."""
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for name, content in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; '
            f'filename="{name}"\r\nContent-Type: text/plain\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def downloaded(client: Client, url: str) -> tuple[Any, bytes]:
    response = client.get(url)
    content = b"".join(response.streaming_content) if response.status_code == 200 else b""  # type: ignore[attr-defined]
    return response, content


@pytest.fixture
def shop(owner: User, member: User) -> Database:
    """A database of the owner's that the member uses (a record: no storage is needed)."""
    database_records(owner, 2, "shop")
    database = Database.objects.get(name="shop-1")
    Membership.objects.create(database=database, user=member, role="user")
    return database


# Opening a request


def test_a_member_opens_a_request_about_a_database_whose_details_come_from_its_record(
    shop: Database, member: User, settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(member)
    with django_capture_on_commit_callbacks(execute=True):
        response = open_json(
            client,
            subject="  The import stopped ",
            database="Shop-1",  # names are typed in any case, as elsewhere in the API
            # What a client cannot set: the details, a size, a state, another account.
            details={"name": "shop-1", "size": "1 byte", "subscription": "FREE-4EVER"},
            size="1 byte",
            state="closed",
            account="owner@example.com",
        )
    assert response.status_code == 201, response.content
    answer = response.json()
    ticket = Ticket.objects.get()
    assert (ticket.account, ticket.database, ticket.state) == (member, shop, "open")
    assert ticket.details == verbs.details(shop)
    assert answer["details"] == {
        "name": "shop-1",
        "uuid": str(shop.uuid),
        "url": shop.url,
        "release": shop.release,
        "engine": "sqlite",
        "size": "1.0\xa0KB",
        "status": shop.status_label,
        "subscription": "",
    }
    assert answer | {"messages": None, "details": None} == {
        "id": ticket.pk,
        "number": f"#{ticket.pk}",
        "url": f"{settings.PORTAL_URL}/support/{ticket.pk}/",
        "subject": "The import stopped",
        "category": "technical",
        "state": "open",
        "database": "shop-1",
        "created_at": answer["created_at"],
        "updated_at": answer["updated_at"],
        "messages": None,
        "details": None,
    }
    [message] = answer["messages"]
    assert (message["author"], message["body"], message["attachments"]) == (
        "you", "Since Monday.", []
    )  # fmt: skip
    # The details are those of the day it was asked: the database grows, they stay.
    Database.objects.filter(pk=shop.pk).update(size_bytes=5 * 1024**3)
    assert client.get(f"/api/v1/support/{ticket.pk}").json() == answer
    # The support team is mailed the request and its database's details; the member, a receipt.
    run_tasks()
    [to_support] = [m for m in mail.outbox if m.to == [settings.SUPPORT_EMAIL]]
    assert to_support.reply_to == ["member@example.com"] and shop.url in to_support.body
    assert any(m.to == ["member@example.com"] for m in mail.outbox)


def test_a_request_about_the_account_in_general_has_no_database(owner: User) -> None:
    client = api(owner)
    response = open_json(client, category="billing")
    assert response.status_code == 201, response.content
    assert (response.json()["database"], response.json()["details"]) == (None, None)
    # A form's empty field is no database either.
    response = open_form(client, [], database="", category="account")
    assert response.status_code == 201, response.content
    assert response.json()["database"] is None
    assert list(Ticket.objects.values_list("details", "category")) == [
        ({}, "account"), ({}, "billing")
    ]  # fmt: skip


def test_another_accounts_database_is_a_404_and_nothing_is_saved(
    shop: Database, outsider: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(outsider)
    for name in ("shop-1", "nowhere"):
        with django_capture_on_commit_callbacks() as mails:
            response = open_json(client, database=name)
        assert response.status_code == 404
        assert response.json() == {"detail": f"No database “{name}”.", "code": "not_found"}
        assert not mails
    assert not Ticket.objects.exists() and not Message.objects.exists()


def test_bad_input_answers_a_sentence_and_saves_nothing(owner: User) -> None:
    client = api(owner)
    empty = open_json(client, subject="  ")
    assert empty.status_code == 400
    assert empty.json() == {
        "detail": "Say what the request is about in its subject.",
        "code": "invalid",
    }
    assert open_json(client, description="").json()["detail"] == "Write a message."
    wrong = open_json(client, category="urgent")
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_request"
    assert wrong.json()["detail"].startswith("Invalid request: category: Input should be")
    missing = client.post("/api/v1/support", {"subject": "x"}, content_type=JSON)
    assert missing.status_code == 422 and "description: Field required" in missing.json()["detail"]
    garbled = client.post("/api/v1/support", "{not json", content_type=JSON)
    assert garbled.status_code == 400
    assert garbled.json()["detail"] == "The body is neither JSON nor a multipart form."
    # A file sent under another name than `attachments` is not dropped without a word.
    other = client.post(
        "/api/v1/support",
        {"subject": "x", "description": "y", "category": "other", "file": file("a.txt")},
    )
    assert other.status_code == 400
    assert other.json()["detail"] == "Send the files as `attachments`, not as `file`."
    assert not Ticket.objects.exists()


# Files


def test_files_are_attached_listed_and_downloaded_by_their_owner(
    owner: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(owner)
    files = [file("report.txt", b"12345"), file("screen.png", b"\x89PNG")]
    with django_capture_on_commit_callbacks(execute=True):
        response = open_form(client, files)
    assert response.status_code == 201, response.content
    ticket = Ticket.objects.get()
    files = response.json()["messages"][0]["attachments"]
    first, second = Attachment.objects.order_by("id")
    assert files == [
        {
            "id": first.pk,
            "name": "report.txt",
            "size": 5,
            "url": f"/api/v1/support/{ticket.pk}/files/{first.pk}",
        },
        {
            "id": second.pk,
            "name": "screen.png",
            "size": 4,
            "url": f"/api/v1/support/{ticket.pk}/files/{second.pk}",
        },
    ]
    assert all(STORED.fullmatch(str(a.file.name)) for a in (first, second))
    answer, content = downloaded(client, files[1]["url"])
    assert (answer.status_code, content) == (200, b"\x89PNG")
    # Never shown inline, whatever the file says it is.
    assert answer["Content-Type"] == "application/octet-stream"
    assert answer["Content-Disposition"] == 'attachment; filename="screen.png"'
    # The support team gets the files with its mail.
    run_tasks()
    [to_support] = [m for m in mail.outbox if m.attachments]
    # (a text file's content is decoded by the mail)
    assert [(name, body) for name, body, _ in to_support.attachments] == [
        ("report.txt", "12345"), ("screen.png", b"\x89PNG")
    ]  # fmt: skip


def test_six_files_are_refused(owner: User) -> None:
    response = open_form(api(owner), [file(f"{n}.txt") for n in range(6)])
    assert response.status_code == 400
    assert response.json() == {"detail": "Attach at most 5 files, not 6.", "code": "invalid"}
    assert not Ticket.objects.exists() and not Attachment.objects.exists()
    assert open_form(api(owner), [file(f"{n}.txt") for n in range(5)]).status_code == 201


def test_a_file_over_10_mb_is_refused(owner: User) -> None:
    big = file("dump.sql", b"x" * (11 * 1024 * 1024))
    response = open_form(api(owner), [file("ok.txt"), big])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["detail"].startswith(
        "“dump.sql” is 11.0\xa0MB: a file may be at most 10"
    )
    assert not Ticket.objects.exists() and not Attachment.objects.exists()


def test_an_empty_file_is_refused(owner: User) -> None:
    response = open_form(api(owner), [file("empty.log", b"")])
    assert response.status_code == 400
    assert response.json()["detail"] == "“empty.log” is empty: attach a file with something in it."
    assert not Ticket.objects.exists()


def test_a_file_name_with_folders_is_kept_as_its_own_name_only(owner: User) -> None:
    client = api(owner)
    fields = {"subject": "Odd files", "description": "See attached.", "category": "other"}
    body, content_type = multipart(
        fields, [("../../etc/passwd", b"root:x:0:0"), ("C:\\x\\report.txt", b"the report")]
    )
    response = client.post("/api/v1/support", body, content_type=content_type)
    assert response.status_code == 201, response.content
    files = response.json()["messages"][0]["attachments"]
    assert [f["name"] for f in files] == ["passwd", "report.txt"]
    assert [a.name for a in Attachment.objects.order_by("id")] == ["passwd", "report.txt"]
    assert all(STORED.fullmatch(str(a.file.name)) for a in Attachment.objects.all())
    answer, content = downloaded(client, files[0]["url"])
    assert (answer["Content-Disposition"], content) == (
        'attachment; filename="passwd"',
        b"root:x:0:0",
    )
    answer, content = downloaded(client, files[1]["url"])
    assert answer["Content-Disposition"] == 'attachment; filename="report.txt"'


# Other accounts


def test_another_account_cannot_read_reply_close_or_download_a_request(
    owner: User, outsider: User
) -> None:
    mine = open_form(api(owner), [file("secret.txt", b"owner's secret")]).json()
    url = f"/api/v1/support/{mine['id']}"
    download = mine["messages"][0]["attachments"][0]["url"]
    other = api(outsider)
    not_found = {"detail": f"No support request #{mine['id']}.", "code": "not_found"}
    answers = [
        other.get(url),
        other.post(f"{url}/reply", {"body": "Me too"}, content_type=JSON),
        other.post(f"{url}/close"),
        other.get(download),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(404, not_found)] * 4
    assert other.get("/api/v1/support").json()["data"] == []
    # Nor through a request of its own: the file is looked up in that request only.
    theirs = open_json(other).json()
    response = other.get(download.replace(f"/support/{mine['id']}/", f"/support/{theirs['id']}/"))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    ticket = Ticket.objects.get(pk=mine["id"])
    assert ticket.state == "open" and ticket.messages.count() == 1  # type: ignore[attr-defined]


# The conversation


def test_replies_and_closing_move_the_request_through_its_states(owner: User) -> None:
    client = api(owner)
    opened = open_json(client).json()
    url = f"/api/v1/support/{opened['id']}"
    ticket = Ticket.objects.get()
    staff = make_account("desk@example.com")
    staff.is_staff = True
    staff.save()
    verbs.reply(ticket, staff, "Which import?", [file("howto.txt", b"steps")], by_staff=True)
    shown = client.get(url).json()
    assert shown["state"] == "answered"
    assert [(m["author"], m["body"]) for m in shown["messages"]] == [
        ("you", "Since Monday."), ("support", "Which import?")
    ]  # fmt: skip
    # The customer downloads support's file too.
    answer, content = downloaded(client, shown["messages"][1]["attachments"][0]["url"])
    assert (answer.status_code, content) == (200, b"steps")

    response = client.post(f"{url}/reply", {"body": "The orders import."}, content_type=JSON)
    assert response.status_code == 201, response.content
    assert response.json()["state"] == "open"
    assert response.json()["messages"][-1] | {"id": 0, "created_at": ""} == {
        "id": 0, "author": "you", "body": "The orders import.", "created_at": "", "attachments": []
    }  # fmt: skip
    # A reply with files, as a form.
    response = client.post(f"{url}/reply", {"body": "The log.", "attachments": [file("a.log")]})
    assert response.status_code == 201, response.content
    assert [a["name"] for a in response.json()["messages"][-1]["attachments"]] == ["a.log"]
    bad = client.post(f"{url}/reply", {"body": " ", "attachments": [file("b.log")]})
    assert bad.status_code == 400 and bad.json()["detail"] == "Write a message."
    too_many = client.post(
        f"{url}/reply", {"body": "x", "attachments": [file("c") for _ in "123456"]}
    )
    assert too_many.json()["detail"] == "Attach at most 5 files, not 6."

    closed = client.post(f"{url}/close")
    assert (closed.status_code, closed.json()["state"]) == (200, "closed")
    again = client.post(f"{url}/close")
    assert again.status_code == 400
    assert again.json() == {
        "detail": f"The request #{ticket.pk} is already closed.",
        "code": "invalid",
    }
    # A reply opens it again.
    response = client.post(f"{url}/reply", {"body": "It is back."}, content_type=JSON)
    assert response.json()["state"] == "open"
    assert Message.objects.filter(ticket=ticket).count() == 5


def test_the_list_is_the_accounts_requests_last_updated_first_in_pages(
    owner: User, outsider: User
) -> None:
    client = api(owner)
    ids = [open_json(client, subject=f"Question {n}").json()["id"] for n in range(5)]
    open_json(api(outsider))
    # Replying to the first makes it the last updated; closing the second closes it.
    assert (
        client.post(f"/api/v1/support/{ids[0]}/reply", {"body": "More."}, JSON).status_code == 201
    )
    assert client.post(f"/api/v1/support/{ids[1]}/close").status_code == 200
    seen, cursor = [], ""
    while True:
        answer = client.get(f"/api/v1/support?limit=2&cursor={cursor}").json()
        seen.append([r["id"] for r in answer["data"]])
        if not answer["has_more"]:
            assert answer["next_cursor"] is None
            break
        cursor = answer["next_cursor"]
    assert seen == [[ids[1], ids[0]], [ids[4], ids[3]], [ids[2]]]
    first = client.get("/api/v1/support?limit=1").json()["data"][0]
    assert set(first) == {
        "id", "number", "url", "subject", "category", "state", "database", "created_at",
        "updated_at",
    }  # fmt: skip
    closed = client.get("/api/v1/support?state=closed").json()
    assert [r["id"] for r in closed["data"]] == [ids[1]] and not closed["has_more"]
    opened = client.get("/api/v1/support?state=open").json()["data"]
    assert [r["id"] for r in opened] == [ids[0], ids[4], ids[3], ids[2]]
    assert client.get("/api/v1/support?state=lost").status_code == 422
    wrong = client.get("/api/v1/support?cursor=not-ours")
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid"


# Limits and retries


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_an_account_sends_30_requests_and_replies_an_hour_then_429(
    owner: User, outsider: User
) -> None:
    client = api(owner)
    ids = [open_json(client, subject=f"Question {n}").json()["id"] for n in range(10)]
    reply = f"/api/v1/support/{ids[0]}/reply"
    for _ in range(20):
        assert client.post(reply, {"body": "More."}, content_type=JSON).status_code == 201
    for response in [open_json(client), client.post(reply, {"body": "More."}, content_type=JSON)]:
        assert response.status_code == 429
        assert response["Retry-After"] == "3600"
        assert response.json() == {
            "detail": "This account has sent too many support requests and replies lately "
            "(30 in an hour at most). Try again in an hour.",
            "code": "rate_limited",
        }
    assert Message.objects.filter(ticket__account=owner).count() == 30
    # Reading and closing are not limited; another account is not held off.
    assert client.get(f"/api/v1/support/{ids[0]}").status_code == 200
    assert client.post(f"/api/v1/support/{ids[0]}/close").status_code == 200
    assert open_json(api(outsider)).status_code == 201


def test_a_request_retried_with_its_idempotency_key_is_opened_once(owner: User) -> None:
    client = api(owner)
    answers = [
        client.post(
            "/api/v1/support",
            {"subject": "x", "description": "y", "category": "other", "attachments": [file("a")]},
            headers={"Idempotency-Key": "support-1"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].content == answers[1].content
    assert answers[1]["Idempotent-Replayed"] == "true"
    assert Ticket.objects.count() == Attachment.objects.count() == 1


# The document


def test_the_document_describes_the_support_operations(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    operations = {
        (method, path): operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if path.startswith("/api/v1/support")
    }
    assert {(m, p, o["operationId"]) for (m, p), o in operations.items()} == {
        ("post", "/api/v1/support", "openSupportRequest"),
        ("get", "/api/v1/support", "listSupportRequests"),
        ("get", "/api/v1/support/{support_id}", "getSupportRequest"),
        ("post", "/api/v1/support/{support_id}/reply", "replySupportRequest"),
        ("post", "/api/v1/support/{support_id}/close", "closeSupportRequest"),
        ("get", "/api/v1/support/{support_id}/files/{attachment_id}", "downloadSupportAttachment"),
    }
    assert all(o["tags"] == ["Support"] for o in operations.values())
    assert "Support" in {tag["name"] for tag in schema["tags"]}
    for (method, path), operation in operations.items():
        assert "404" in operation["responses"] or path == "/api/v1/support", (method, path)
    components = schema["components"]["schemas"]
    for name in ("OpenSupportRequest", "ReplySupportRequest"):
        body = schema["paths"]["/api/v1/support"]["post"]["requestBody"]
        if name == "ReplySupportRequest":
            body = schema["paths"]["/api/v1/support/{support_id}/reply"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"]["$ref"].endswith(f"/{name}")
        form = body["content"]["multipart/form-data"]["schema"]["$ref"]
        assert form == f"#/components/schemas/{name}Form"
        assert components[f"{name}Form"]["properties"]["attachments"]["items"] == {
            "type": "string", "format": "binary"
        }  # fmt: skip
        assert components[f"{name}Form"]["properties"]["attachments"]["maxItems"] == 5
    assert components["SupportCategory"]["enum"] == ["technical", "billing", "account", "other"]
    assert components["SupportState"]["enum"] == ["open", "answered", "closed"]
    download = operations[("get", "/api/v1/support/{support_id}/files/{attachment_id}")]
    content = download["responses"]["200"]["content"]
    assert content["application/octet-stream"]["schema"]["format"] == "binary"


def test_the_support_enums_are_the_models_choices() -> None:
    """Written out for the document's sake: they must not drift."""
    from tenantry.api import schemas

    assert {c.value for c in schemas.SupportCategory} == set(Ticket.Category.values)
    assert {s.value for s in schemas.SupportState} == set(Ticket.State.values)
    assert list(schemas.SupportDatabaseDetails.model_fields) == [key for key, _ in verbs.DETAILS]


def test_a_body_that_is_not_json_is_refused_with_the_errors_shape(alice: User) -> None:
    client = api(alice)
    response = client.post("/api/v1/databases", "{bad", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body.", "code": "invalid"}
