"""The REST API's conventions around every operation: POSTs made safe to retry by an
Idempotency-Key, a rate limit per API key, and an X-Request-Id on every answer of the site."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from tenantry.accounts.models import ApiKey, User
from tenantry.api import middleware
from tenantry.backups.models import Backup
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database
from tenantry.operations.models import Operation
from tests.conftest import api, run_tasks
from tests.helpers import run_pending

# Its lookups and limits live in the caches: each test runs with them in the control
# database, then in Redis (tests/redis_server.py).
pytestmark = pytest.mark.usefixtures("both_caches")

sqlite = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
JSON = "application/json; charset=utf-8"
MADE_ID = re.compile(r"[0-9a-f]{32}")


def create(client: Client, name: str, key: str | None = None, address: str = "127.0.0.1") -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/databases",
        {"name": name},
        content_type="application/json",
        headers=headers,
        REMOTE_ADDR=address,
    )


# Idempotency keys


@sqlite
def test_a_create_retried_with_its_key_answers_the_first_201_and_creates_once(
    engine_kind: str, owner: User
) -> None:
    client = api(owner)
    first = create(client, "acme", "a3f1-create-acme")
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    entries = Activity.objects.count()
    again = create(client, "acme", "a3f1-create-acme")
    assert (again.status_code, again.content) == (201, first.content)
    assert (again["Content-Type"], again["Idempotent-Replayed"]) == (JSON, "true")
    assert Database.objects.count() == 1 and Activity.objects.count() == entries
    # Without a key, a retry is another create, refused as someone else's name would be.
    response = create(client, "acme")
    assert response.status_code == 409
    assert response.json()["detail"] == "The name “acme” is already taken. Choose another one."


@sqlite
def test_a_key_sent_with_another_request_answers_422_and_runs_nothing(
    engine_kind: str, owner: User
) -> None:
    client = api(owner)
    assert create(client, "acme", "key-1").status_code == 201
    for response in [
        create(client, "other", "key-1"),
        client.post(
            "/api/v1/databases/acme/duplicate",
            {"name": "acme"},
            content_type="application/json",
            headers={"Idempotency-Key": "key-1"},
        ),
    ]:
        assert (response.status_code, response["Content-Type"]) == (422, JSON)
        assert response.json() == {
            "detail": "This Idempotency-Key was used for another request (method, path or body) "
            "in the last 24 hours: send a new key with a new request.",
            "code": "idempotency_mismatch",
        }
    assert list(Database.objects.values_list("name", flat=True)) == ["acme"]
    assert not Operation.objects.exists()
    response = create(client, "other", "k" * 256)
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert create(client, "other", "k" * 255).status_code == 201


@sqlite
def test_another_accounts_key_or_a_revoked_key_replays_nothing(
    engine_kind: str, owner: User, outsider: User
) -> None:
    assert create(api(owner), "acme", "shared-key").status_code == 201
    # The same Idempotency-Key from another account runs its own request.
    response = create(api(outsider), "acme", "shared-key")
    assert response.status_code == 409 and "already taken" in response.json()["detail"]
    assert "Idempotent-Replayed" not in response
    # A key revoked since gets its 401, not the answer kept for it.
    client = api(owner)
    assert create(client, "beta", "mine").status_code == 201
    ApiKey.objects.filter(user=owner).update(revoked_at=timezone.now())
    response = create(client, "beta", "mine")
    assert response.status_code == 401 and "Idempotent-Replayed" not in response


@sqlite
def test_an_address_locked_out_after_wrong_keys_gets_429_not_the_kept_answer(
    engine_kind: str, owner: User
) -> None:
    client = api(owner)
    assert create(client, "acme", "key-1", address="203.0.113.7").status_code == 201
    # Wrong keys sent with an Idempotency-Key count once each, as without one.
    guesser = Client(headers={"Authorization": "Bearer tnt_guess"})
    for n in range(10):
        response = create(guesser, "acme", f"guess-{n}", address="203.0.113.7")
        assert (response.status_code, response["WWW-Authenticate"]) == (401, "Bearer")
    response = create(client, "acme", "key-1", address="203.0.113.7")
    assert response.status_code == 429 and "Idempotent-Replayed" not in response
    assert create(client, "acme", "key-1", address="203.0.113.8").status_code == 201


@sqlite
def test_a_retry_while_the_first_is_running_answers_409_then_the_first_answer(
    engine_kind: str, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api(owner)
    retries: list[Any] = []
    real_create = lifecycle.create

    def create_while_retried(name: str, *, by: User) -> Database:
        # The client gives up on the first request and retries while it is still running.
        if not retries:
            retries.append(create(client, name, "slow"))
        return real_create(name, by=by)

    monkeypatch.setattr(lifecycle, "create", create_while_retried)
    first = create(client, "acme", "slow")
    assert first.status_code == 201
    assert [(r.status_code, r["Retry-After"]) for r in retries] == [(409, "1")]
    assert retries[0].json()["code"] == "idempotency_in_progress"
    again = create(client, "acme", "slow")
    assert (again.status_code, again.content) == (201, first.content)
    assert Database.objects.count() == 1


@sqlite
def test_an_invitation_retried_with_its_key_sends_one_mail(engine_kind: str, owner: User) -> None:
    lifecycle.create("acme", by=owner)
    client = api(owner)
    answers = [
        client.post(
            "/api/v1/databases/acme/users",
            {"emails": ["new@example.com"]},
            content_type="application/json",
            headers={"Idempotency-Key": "invite-new"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].content == answers[1].content
    run_tasks()
    assert len([m for m in mail.outbox if m.to == ["new@example.com"]]) == 1


@sqlite
def test_a_restore_upload_retried_with_its_key_is_replayed(
    engine_kind: str, owner: User, settings: Settings
) -> None:
    lifecycle.create("shop", by=owner)
    client = api(owner)
    download = client.get("/api/v1/databases/shop/download")
    data = b"".join(download.streaming_content)  # type: ignore[attr-defined]
    # The upload lies on disk, and is larger than a body read into memory may be: hashing it
    # must not read request.body (that would answer 413).
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert len(data) > 1000

    def upload(content: bytes) -> Any:
        file = io.BytesIO(content)
        file.name = "shop.zip"
        return client.post(
            "/api/v1/databases/shop-copy/restore",
            {"file": file, "neutralize": "true"},
            headers={"Idempotency-Key": "restore-shop"},
        )

    first = upload(data)
    assert first.status_code == 202, first.content
    again = upload(data)
    assert (again.status_code, again.content) == (202, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert upload(data[:-1] + b"!").status_code == 422
    assert Operation.objects.filter(kind="restore").count() == 1
    assert Backup.objects.filter(kind=Backup.Kind.UPLOAD).count() == 1
    # The operation read the whole file, from its start, after it was hashed.
    run_pending()
    assert Operation.objects.get(kind="restore").state == "done"
    assert Database.objects.filter(name="shop-copy").exists()


# Rate limits


class Clock:
    """The rate limit's clock, stopped at 30.5 seconds into a minute."""

    now = 1_800_000_030.5

    @classmethod
    def time(cls) -> float:
        return cls.now


def test_every_answer_to_a_key_says_its_rate_limit_and_429_beyond(
    owner: User, outsider: User, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.API_RATE_LIMIT = 5
    monkeypatch.setattr(middleware, "time", Clock)
    client = api(owner)
    answers = [
        client.get("/api/v1/me"),
        client.get("/api/v1/databases"),
        client.get("/api/v1/databases/nowhere"),
        client.post("/api/v1/databases", {}, content_type="application/json"),
        client.get("/api/v1/nothing-here"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 422, 404]
    assert [
        (a["RateLimit-Limit"], a["RateLimit-Remaining"], a["RateLimit-Reset"]) for a in answers
    ] == [("5", str(n), "30") for n in (4, 3, 2, 1, 0)]
    response = client.get("/api/v1/me")
    assert (response.status_code, response["Content-Type"]) == (429, JSON)
    assert response.json() == {
        "detail": "Too many requests with this API key: 5 a minute at most. "
        "Try again in 30 seconds.",
        "code": "rate_limited",
    }
    assert (response["Retry-After"], response["RateLimit-Remaining"]) == ("30", "0")
    # Another account's key has its own count.
    assert api(outsider).get("/api/v1/me")["RateLimit-Remaining"] == "4"
    # The next minute starts a new count.
    monkeypatch.setattr(Clock, "now", Clock.now + 30)
    response = client.get("/api/v1/me")
    assert (response.status_code, response["RateLimit-Remaining"]) == (200, "4")
    assert response["RateLimit-Reset"] == "60"


def test_made_up_keys_are_not_counted_and_requests_without_a_key_have_no_limit(
    owner: User, settings: Settings
) -> None:
    settings.API_RATE_LIMIT = 2
    guesser = Client(headers={"Authorization": "Bearer tnt_guess"})
    for _ in range(3):
        response = guesser.get("/api/v1/me")
        assert (response.status_code, response["RateLimit-Remaining"]) == (401, "2")
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and "RateLimit-Limit" not in response


# Request ids


def test_every_answer_of_the_site_carries_a_request_id_echoed_or_made(
    owner: User, db: None
) -> None:
    client = api(owner)
    response = client.get("/api/v1/me", headers={"X-Request-Id": "client-42.retry_1"})
    assert response["X-Request-Id"] == "client-42.retry_1"
    made = client.get("/api/v1/me")["X-Request-Id"]
    assert MADE_ID.fullmatch(made) and client.get("/api/v1/me")["X-Request-Id"] != made
    for sent in ["two words", "x" * 201, "<script>", "id\nforged=1", ""]:
        response = client.get("/api/v1/me", headers={"X-Request-Id": sent})
        assert MADE_ID.fullmatch(response["X-Request-Id"]), sent
    # The portal's pages, and the gateway's page for a host that is no database's.
    response = Client().get("/", headers={"X-Request-Id": "portal-1"})
    assert response.status_code == 302 and response["X-Request-Id"] == "portal-1"
    response = Client(HTTP_HOST="nowhere.localhost").get("/")
    assert response.status_code == 404 and MADE_ID.fullmatch(response["X-Request-Id"])


def test_log_lines_written_for_a_request_carry_its_id(db: None) -> None:
    console = logging.getHandlerByName("console")
    assert isinstance(console, logging.StreamHandler)
    lines = io.StringIO()
    stream = console.setStream(lines)
    try:
        Client().get("/api/v1/nothing-here", headers={"X-Request-Id": "trace-7"})
        logging.getLogger("tenantry.tests").warning("After the request")
    finally:
        console.setStream(stream)
    assert lines.getvalue().splitlines() == [
        "WARNING django.request request_id=trace-7 Not Found: /api/v1/nothing-here",
        "WARNING tenantry.tests request_id=- After the request",
    ]
