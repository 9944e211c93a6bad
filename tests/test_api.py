from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.core.internal import ratelimit as allauth_ratelimit
from django.test import Client
from pytest_django.fixtures import Settings

from tenantry.accounts.models import User
from tenantry.databases.models import Database
from tests.conftest import api


def test_openapi_description_and_docs_page_are_served(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert "/api/v1/me" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    # Served from our own static files: no CDN.
    assert "cdn" not in docs.content.decode().lower()


def test_errors_answer_json_with_a_sentence(db: None) -> None:
    response = Client().get("/api/v1/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"].startswith("A valid API key is required")


JSON = "application/json; charset=utf-8"


def test_unknown_api_paths_answer_a_json_404(db: None) -> None:
    # enforce_csrf_checks: a POST to a missing path is no CSRF failure (an HTML 403).
    client = Client(enforce_csrf_checks=True)
    for method, path in [
        ("get", "/api/v1/nothing-here"),
        ("get", "/api/v1/"),
        ("get", "/api/v1/me/"),
        ("post", "/api/v1/databases/acme/nothing"),
    ]:
        response = getattr(client, method)(path)
        assert (response.status_code, response["Content-Type"]) == (404, JSON), path
        assert response.json()["detail"] == f"There is no {path} in the API: see /api/v1/docs."


def test_a_method_a_path_does_not_take_answers_a_json_405(db: None) -> None:
    response = Client().delete("/api/v1/me")
    assert (response.status_code, response["Content-Type"]) == (405, JSON)
    assert response["Allow"] == "GET"
    assert response.json() == {
        "detail": "DELETE is not allowed here: use GET.",
        "code": "method_not_allowed",
    }
    response = Client().put("/api/v1/databases", {"name": "acme"}, content_type="application/json")
    assert response.status_code == 405
    assert sorted(response["Allow"].split(", ")) == ["GET", "POST"]
    assert response.json()["detail"].startswith("PUT is not allowed here")


def test_a_body_over_the_upload_limit_answers_a_json_413(owner: User, settings: Settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = api(owner)
    response = client.post(
        "/api/v1/databases", {"name": "a" * 1000}, content_type="application/json"
    )
    assert (response.status_code, response["Content-Type"]) == (413, JSON)
    assert response.json() == {
        "detail": "The request body is over the limit of 1000 bytes (uploaded files aside).",
        "code": "too_large",
    }
    # The same for a multipart form, whose fields (not its files) count.
    response = client.post("/api/v1/databases/acme/restore", {"backup": "1" * 2000})
    assert (response.status_code, response["Content-Type"]) == (413, JSON)
    assert not Database.objects.exists()


def responses(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return schema["paths"][path][method]["responses"]  # type: ignore[no-any-return]


def test_openapi_lists_every_error_with_its_schema(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    create = responses(schema, "post", "/api/v1/databases")
    assert set(create) == {"201", "400", "401", "409", "413", "422", "429", "503"}
    assert all(create[status]["content"] == error for status in create if status != "201")
    assert set(responses(schema, "get", "/api/v1/databases/{name}")) == {"200", "401", "404", "429"}
    assert set(responses(schema, "delete", "/api/v1/databases/{name}/users/{email}")) == {
        "204", "400", "401", "403", "404", "429"
    }  # fmt: skip
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            where = f"{method} {path}"
            # Every operation: a key is needed, and an address sending wrong ones waits.
            assert answers["401"]["content"] == answers["429"]["content"] == error, where
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(answers), where
            if "{name}" in path:
                assert "404" in answers, where
            if "/users" in path or "/backups" in path or method in ("patch", "delete"):
                assert "403" in answers, where  # for members who are not administrators


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_too_many_wrong_keys_from_one_address_hold_it_off_a_minute(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = api(owner)
    guesser = Client(headers={"Authorization": "Bearer tnt_guess"}, REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        assert guesser.get("/api/v1/me").status_code == 401
        assert (
            guesser.post("/api/v1/databases", {"name": "x"}, "application/json").status_code == 401
        )
    # The limit is reached: even a good key from that address waits, and is not checked.
    response = good.get("/api/v1/me", REMOTE_ADDR="203.0.113.7")
    assert (response.status_code, response["Content-Type"]) == (429, JSON)
    assert response["Retry-After"] == "60"
    assert response.json() == {
        "detail": "Too many requests with a wrong API key came from your address. "
        "Try again in 60 seconds.",
        "code": "rate_limited",
    }
    assert guesser.get("/api/v1/me").status_code == 429
    # Another address is not held off.
    assert good.get("/api/v1/me", REMOTE_ADDR="203.0.113.8").status_code == 200

    # A minute later, the address is let in again.
    class Later:
        monotonic, sleep = time.monotonic, time.sleep

        @staticmethod
        def time() -> float:
            return time.time() + 61

    monkeypatch.setattr(allauth_ratelimit, "time", Later)
    assert good.get("/api/v1/me", REMOTE_ADDR="203.0.113.7").status_code == 200


@pytest.mark.usefixtures("both_caches")  # in the caches: also on Redis
def test_a_good_key_does_not_clear_the_failures_of_its_address(owner: User) -> None:
    good = api(owner)
    guesser = Client(headers={"Authorization": "Bearer tnt_guess"}, REMOTE_ADDR="203.0.113.9")
    for _ in range(9):
        assert guesser.get("/api/v1/me").status_code == 401
        assert good.get("/api/v1/me", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert guesser.get("/api/v1/me").status_code == 401
    assert good.get("/api/v1/me", REMOTE_ADDR="203.0.113.9").status_code == 429


def test_the_document_names_and_types_what_a_client_needs(db: None, settings: Settings) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert schema["servers"] == [{"url": settings.PORTAL_URL, "description": "This Tenantry."}]
    assert schema["info"]["contact"]["name"] == "Tenantry"
    bearer = schema["components"]["securitySchemes"]["ApiKeyAuth"]
    assert bearer["bearerFormat"] == "tnt_…" and "developer mode" in bearer["description"]
    ids = {op["operationId"]: op["tags"] for ops in schema["paths"].values() for op in ops.values()}
    assert ids["createDatabase"] == ["Databases"] and ids["listBackups"] == ["Backups"]
    assert ids["inviteUsers"] == ["Users"] and ids["getOperation"] == ["Operations"]
    components = schema["components"]["schemas"]
    assert components["OperationState"]["enum"] == ["queued", "running", "done", "failed"]
    assert components["Role"]["enum"] == ["admin", "user"]
    assert "RestoreDatabaseRequest" in components
    for name, component in components.items():
        for field, spec in component.get("properties", {}).items():
            assert spec.get("description") or "$ref" in spec or "allOf" in spec, (name, field)
    download = schema["paths"]["/api/v1/databases/{name}/backups/{backup_id}/download"]["get"]
    assert download["responses"]["200"]["content"]["application/zip"]["schema"]["format"] == (
        "binary"
    )
    assert "Location" in download["responses"]["302"]["headers"]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_long_action_says_where_and_when_to_poll_and_busy_says_when_to_retry(
    engine_kind: str, owner: User
) -> None:
    from tenantry.databases import lifecycle

    lifecycle.create("acme", by=owner)
    key = api(owner)
    json = {"content_type": "application/json"}
    response = key.post("/api/v1/databases/acme/duplicate", {"name": "acme-copy"}, **json)
    assert response.status_code == 202
    operation = response.json()
    assert response["Location"] == operation["url"] == f"/api/v1/operations/{operation['id']}"
    assert response["Retry-After"] == "2" and operation["state"] == "queued"
    busy = key.post("/api/v1/databases/acme/duplicate", {"name": "acme-two"}, **json)
    assert busy.status_code == 409 and busy["Retry-After"] == "2"
    assert busy.json()["code"] == "busy"
    taken = key.post("/api/v1/databases", {"name": "acme"}, **json)
    assert taken.status_code == 409 and taken.json()["code"] == "taken"
    missing = key.get("/api/v1/databases/nowhere")
    assert missing.json() == {"detail": "No database “nowhere”.", "code": "not_found"}
    assert key.get("/api/v1/operations/999999").json()["detail"] == "No operation 999999."
    shown = key.get("/api/v1/databases/acme").json()
    assert (shown["status"], shown["status_label"]) == ("active", "Trial: 15 days left")


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_lists_come_in_pages_that_a_cursor_walks(engine_kind: str, owner: User) -> None:
    from tenantry.databases import lifecycle

    for name in ("aaa", "bbb", "ccc", "ddd", "eee"):
        lifecycle.create(name, by=owner)
    key = api(owner)
    seen, cursor = [], ""
    while True:
        answer = key.get(f"/api/v1/databases?limit=2&cursor={cursor}").json()
        seen.append([d["name"] for d in answer["data"]])
        if not answer["has_more"]:
            assert answer["next_cursor"] is None
            break
        cursor = answer["next_cursor"]
    assert seen == [["aaa", "bbb"], ["ccc", "ddd"], ["eee"]]
    wrong = key.get("/api/v1/databases?cursor=not-ours")
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid"
    assert key.get("/api/v1/databases?limit=500").status_code == 422


def test_the_api_s_enums_are_the_models_choices() -> None:
    """The API's enums are written out for the document's sake: they must not drift."""
    from tenantry.api import schemas
    from tenantry.backups.models import Backup
    from tenantry.databases.models import Activity, Database, Membership
    from tenantry.operations.models import KIND_NAMES, Operation

    def values(enum: type) -> set[str]:
        return {member.value for member in enum}

    assert values(schemas.Engine) == set(Database.Engine.values)
    assert values(schemas.Role) == set(Membership.Role.values)
    assert values(schemas.DatabaseStatus) == {*Database.Status.values, "expired"}
    assert values(schemas.OperationState) == set(Operation.State.values)
    assert values(schemas.OperationKind) == set(KIND_NAMES)
    assert values(schemas.BackupKind) == set(Backup.Kind.values) - {"upload"}
    assert values(schemas.ActivityKind) == set(Activity.Kind.values)
    assert values(schemas.Channel) == set(Activity.Channel.values)
    assert values(schemas.ActivityResult) == set(Activity.Result.values)
