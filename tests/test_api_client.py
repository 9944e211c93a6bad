"""The API as an integrator uses it: a Python client generated with openapi-python-client from
the live OpenAPI document (no generator warning), driving a real server (pytest-django's live
server) and worker with a real API key. Operation ids and tags name its modules
(`api.databases.create_database`); every error is a typed `Error` with a `code`."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from tenantry.accounts.models import ApiKey, User
from tenantry.billing import subscriptions
from tenantry.billing.models import Plan
from tenantry.databases.models import Database, Membership
from tenantry.releases import models as releases
from tests.browser import Worker
from tests.conftest import database_records

pytestmark = pytest.mark.slow

PACKAGE = "tenantry_client"
OPERATIONS = {
    "account": {"get_me"},
    "databases": {
        "create_database", "list_databases", "get_database", "rename_database",
        "delete_database", "duplicate_database", "upgrade_database",
    },
    "backups": {"download_database", "list_backups", "download_backup", "restore_database"},
    "users": {"list_users", "invite_users", "remove_user"},
    "operations": {"get_operation"},
    "activity": {"list_activity"},
    "domains": {"list_domains", "add_domain", "remove_domain", "verify_domain"},
    "releases": {"list_releases"},
    "subscriptions": {
        "list_subscriptions", "get_subscription", "change_subscription", "cancel_subscription",
        "renew_subscription", "link_database", "unlink_database",
    },
    "support": {
        "open_support_request", "list_support_requests", "get_support_request",
        "reply_support_request", "close_support_request", "download_support_attachment",
    },
}  # fmt: skip
# The generator skips a response whose media type it does not know, with a warning; its own
# documented setting reads the downloads' application/zip as bytes.
GENERATOR_CONFIG = "content_type_overrides:\n  application/zip: application/octet-stream\n"


@pytest.fixture(scope="module")
def generated(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The client package, generated from the live document and importable as PACKAGE."""
    folder = tmp_path_factory.mktemp("client")
    document = httpx.get(f"{live_server.url}/api/v1/openapi.json", timeout=30)
    assert document.status_code == 200
    (folder / "openapi.json").write_bytes(document.content)
    (folder / "config.yaml").write_text(GENERATOR_CONFIG)
    bin_dir = Path(sys.executable).parent  # the generator, and the ruff it formats with
    run = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"), "generate",
            "--path", "openapi.json", "--config", "config.yaml",
            "--output-path", PACKAGE, "--meta", "none", "--fail-on-warning",
        ],
        cwd=folder, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "Warning" not in output, output
    sys.path.insert(0, str(folder))
    yield folder / PACKAGE
    sys.path.remove(str(folder))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def key_for(user: User) -> str:
    """A real API key of `user` (developer mode on), as the portal issues it."""
    user.developer_mode = True
    user.save()
    return ApiKey.objects.issue(user, "generated client")[1]


# The clients a test made, closed after it: a kept-alive connection keeps its live server
# thread, and that thread its control-plane connection (CONN_MAX_AGE), past the session's end.
_clients: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().get_httpx_client().close()


def api_client(base: str, user: User | None, token: str = "") -> Any:
    client_module = importlib.import_module(f"{PACKAGE}.client")
    token = token or key_for(user)  # type: ignore[arg-type]
    client = client_module.AuthenticatedClient(base_url=base, token=token, timeout=60)
    _clients.append(client)
    return client


def test_the_operations_are_named_by_their_ids_in_modules_named_by_their_tags(
    generated: Path,
) -> None:
    found = {
        tag.name: {p.stem for p in tag.glob("*.py") if p.stem != "__init__"}
        for tag in (generated / "api").iterdir()
        if tag.is_dir() and tag.name != "__pycache__"
    }
    assert "default" not in found, "operations without a tag"
    for tag, operations in OPERATIONS.items():
        assert operations <= found.get(tag, set()), tag


def accepted(response: Any) -> Any:
    """The operation a long action answered with, after checking where and when to poll it."""
    assert response.status_code == 202, response.content
    operation = response.parsed
    assert response.headers["Location"] == operation.url == f"/api/v1/operations/{operation.id}"
    assert int(response.headers["Retry-After"]) > 0
    return operation


def finished(client: Any, operation: Any) -> Any:
    """Poll the operation, as a client does, until it is done or failed."""
    from tenantry_client.api.operations import get_operation
    from tenantry_client.models import OperationState

    deadline = time.monotonic() + 60
    while operation.state not in (OperationState.DONE, OperationState.FAILED):
        assert time.monotonic() < deadline, f"operation {operation.id} still {operation.state}"
        time.sleep(1)  # the worker looks for work every second; Retry-After says 2
        operation = get_operation.sync(operation.id, client=client)
    assert operation.state == OperationState.DONE, operation.error
    return operation


def stream_to_file(client: Any, request: dict[str, Any], path: Path) -> httpx.Response:
    """Write a download to `path` as it arrives. The generated functions read a whole answer
    into memory; the generated request sent with the client's own httpx client streams it."""
    with client.get_httpx_client().stream(**request) as response, path.open("wb") as file:
        for chunk in response.iter_bytes():
            file.write(chunk)
    return response


def test_the_generated_client_drives_the_whole_flow(
    generated: Path,
    portal: str,
    worker: Worker,
    owner: User,
    tmp_path: Path,
) -> None:
    from tenantry_client.api.backups import (
        download_backup,
        download_database,
        list_backups,
        restore_database,
    )
    from tenantry_client.api.databases import (
        create_database,
        delete_database,
        duplicate_database,
        get_database,
        list_databases,
        rename_database,
    )
    from tenantry_client.api.users import invite_users, list_users, remove_user
    from tenantry_client.models import (
        BackupKind,
        CreateDatabaseRequest,
        DatabaseStatus,
        DuplicateDatabaseRequest,
        Engine,
        InviteUsersRequest,
        RenameDatabaseRequest,
        RestoreDatabaseRequest,
        Role,
        UserStatus,
    )
    from tenantry_client.types import File

    client = api_client(portal, owner)
    worker.start()

    # Create, duplicate for testing, rename the copy.
    answer = create_database.sync_detailed(client=client, body=CreateDatabaseRequest(name="Shop"))
    assert answer.status_code == 201, answer.content
    shop = answer.parsed
    assert (shop.name, shop.role, shop.engine) == ("shop", Role.ADMIN, Engine.SQLITE)
    assert shop.status == DatabaseStatus.ACTIVE and shop.url.startswith("http://shop.")
    copying = duplicate_database.sync_detailed(
        "shop", client=client, body=DuplicateDatabaseRequest(name="shop-test")
    )
    assert finished(client, accepted(copying)).target == "shop-test"
    renamed = rename_database.sync(
        "shop-test", client=client, body=RenameDatabaseRequest(name="shop-trial")
    )
    assert (renamed.name, renamed.is_test_copy) == ("shop-trial", True)
    assert get_database.sync("shop-trial", client=client).expires_at is not None

    # Invite someone, see them listed as invited, take the invitation back.
    invited = invite_users.sync_detailed(
        "shop", client=client, body=InviteUsersRequest(emails=["bo@example.com"], role=Role.USER)
    )
    assert invited.status_code == 201, invited.content
    assert [(u.email, u.status) for u in invited.parsed] == [("bo@example.com", UserStatus.INVITED)]
    users = list_users.sync("shop", client=client).data
    assert {(u.email, u.role) for u in users} == {
        (owner.email, Role.ADMIN), ("bo@example.com", Role.USER)
    }  # fmt: skip
    assert remove_user.sync_detailed("shop", "bo@example.com", client=client).status_code == 204

    # Download the database's backup ZIP to a file, streamed.
    zipped = tmp_path / "shop.zip"
    response = stream_to_file(client, download_database._get_kwargs("shop"), zipped)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert "manifest.json" in zipfile.ZipFile(zipped).namelist()

    # Restore it into a new database, then over the first one (which is backed up first).
    with zipped.open("rb") as file:
        upload = File(payload=file, file_name="shop.zip", mime_type="application/zip")
        restoring = restore_database.sync_detailed(
            "shop-two", client=client, body=RestoreDatabaseRequest(file=upload)
        )
    finished(client, accepted(restoring))
    assert get_database.sync("shop-two", client=client).status == DatabaseStatus.ACTIVE
    with zipped.open("rb") as file:
        upload = File(payload=file, file_name="shop.zip", mime_type="application/zip")
        body = RestoreDatabaseRequest(file=upload, replace=True)
        finished(client, accepted(restore_database.sync_detailed("shop", client=client, body=body)))

    # The backup made before that restore: listed, downloaded, restored into a third database.
    backups = list_backups.sync("shop", client=client)
    assert [b.kind for b in backups.data] == [BackupKind.BEFORE_RESTORE]
    assert backups.has_more is False and backups.next_cursor is None
    backup = backups.data[0]
    answer = download_backup.sync_detailed("shop", backup.id, client=client)
    assert answer.status_code == 200 and isinstance(answer.parsed, File)
    assert len(answer.parsed.payload.read()) == backup.size
    body = RestoreDatabaseRequest(backup=backup.id)
    finished(client, accepted(restore_database.sync_detailed("shop-3", client=client, body=body)))

    # Delete one: its name is free at once, the operation removes the rest.
    deleting = accepted(delete_database.sync_detailed("shop-two", client=client))
    assert get_database.sync_detailed("shop-two", client=client).status_code == 404
    finished(client, deleting)
    names = [d.name for d in list_databases.sync(client=client).data]
    assert names == ["shop", "shop-3", "shop-trial"]
    assert Database.objects.count() == 3


def test_an_upgrade_and_its_report_reach_the_client_typed(
    generated: Path, portal: str, worker: Worker, owner: User
) -> None:
    from tenantry_client.api.databases import create_database, get_database, upgrade_database
    from tenantry_client.models import (
        CreateDatabaseRequest,
        Error,
        ErrorCode,
        UpgradeDatabaseRequest,
        UpgradeState,
    )

    for version in ("1.0", "1.1"):  # a transactional test starts with no release recorded
        releases.publish(version, timezone.now() - timedelta(minutes=1))
    client = api_client(portal, owner)
    create_database.sync(client=client, body=CreateDatabaseRequest(name="shop"))
    releases.publish("2.0", timezone.now() - timedelta(minutes=1))
    shop = get_database.sync("shop", client=client)
    assert (shop.release, shop.upgrade_to, shop.upgrade_failed) == ("1.1", "2.0", False)
    assert isinstance(shop.upgrade_deadline, datetime)
    worker.start()

    upgrading = upgrade_database.sync_detailed("shop", client=client, body=UpgradeDatabaseRequest())
    report = finished(client, accepted(upgrading)).result
    assert (report.state, report.from_release, report.to_release) == (
        UpgradeState.SUCCEEDED, "1.1", "2.0"
    )  # fmt: skip
    assert report.steps == ["0003_release_2_0"] and report.test_copy is None
    assert {t.table: (t.before, t.after) for t in report.tables}["workspace_company"] == (None, 0)
    assert get_database.sync("shop", client=client).upgrade_to is None

    answer = upgrade_database.sync_detailed("shop", client=client, body=UpgradeDatabaseRequest())
    assert answer.status_code == 400 and isinstance(answer.parsed, Error)
    assert (answer.parsed.code, answer.parsed.detail) == (
        ErrorCode.INVALID, "“shop” is already at release 2.0."
    )  # fmt: skip


def test_each_error_reaches_the_client_as_a_typed_error(
    generated: Path, portal: str, owner: User, member: User
) -> None:
    from tenantry_client.api.account import get_me
    from tenantry_client.api.databases import (
        create_database,
        delete_database,
        duplicate_database,
        get_database,
        list_databases,
        rename_database,
    )
    from tenantry_client.models import (
        CreateDatabaseRequest,
        DuplicateDatabaseRequest,
        Error,
        ErrorCode,
        RenameDatabaseRequest,
    )

    client = api_client(portal, owner)
    assert create_database.sync_detailed(
        client=client, body=CreateDatabaseRequest(name="shop")
    ).status_code == 201  # fmt: skip

    def error(answer: Any, status: int, code: ErrorCode) -> str:
        assert answer.status_code == status, answer.content
        assert isinstance(answer.parsed, Error), answer.parsed
        assert answer.parsed.code == code
        return answer.parsed.detail  # type: ignore[no-any-return]

    no_key = api_client(portal, None, token="tnt_not-a-key")
    detail = error(get_me.sync_detailed(client=no_key), 401, ErrorCode.UNAUTHORIZED)
    assert detail.startswith("A valid API key is required")

    answer = get_database.sync_detailed("nothing-here", client=client)
    assert error(answer, 404, ErrorCode.NOT_FOUND) == "No database “nothing-here”."

    answer = create_database.sync_detailed(client=client, body=CreateDatabaseRequest(name="x"))
    assert error(answer, 400, ErrorCode.INVALID) == "A database name has 3 to 63 characters."

    answer = create_database.sync_detailed(client=client, body=CreateDatabaseRequest(name="shop"))
    assert "already taken" in error(answer, 409, ErrorCode.TAKEN)

    # No worker runs: the copy waits, and nothing else can be done to "shop" meanwhile.
    copy = DuplicateDatabaseRequest(name="shop-copy")
    assert duplicate_database.sync_detailed("shop", client=client, body=copy).status_code == 202
    answer = delete_database.sync_detailed("shop", client=client)
    assert "already running" in error(answer, 409, ErrorCode.BUSY)
    assert int(answer.headers["Retry-After"]) > 0

    Membership.objects.create(
        database=Database.objects.get(name="shop"), user=member, role=Membership.Role.USER
    )
    as_member = api_client(portal, member)
    answer = rename_database.sync_detailed(
        "shop", client=as_member, body=RenameDatabaseRequest(name="mine")
    )
    assert (
        error(answer, 403, ErrorCode.FORBIDDEN) == "Only the database's administrators can do this."
    )

    answer = list_databases.sync_detailed(client=client, limit=0)
    assert "limit" in error(answer, 422, ErrorCode.INVALID_REQUEST)


def test_a_list_longer_than_a_page_is_read_page_by_page_with_the_cursor(
    generated: Path, portal: str, owner: User
) -> None:
    from tenantry_client.api.databases import list_databases

    database_records(owner, 5, "db")
    client = api_client(portal, owner)
    names, pages, cursor = [], 0, None
    while True:
        page = list_databases.sync(client=client, limit=2, cursor=cursor)
        names += [d.name for d in page.data]
        pages += 1
        assert page.has_more == (page.next_cursor is not None)
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert (names, pages) == ([f"db-{i}" for i in range(5)], 3)


def test_a_create_retried_with_its_idempotency_key_answers_the_same_and_creates_once(
    generated: Path, portal: str, owner: User
) -> None:
    from tenantry_client.api.databases import create_database, list_databases
    from tenantry_client.models import CreateDatabaseRequest, Error, ErrorCode

    client = api_client(portal, owner)
    # A client whose connection broke after sending retries with the same key.
    retrying = client.with_headers({"Idempotency-Key": "create-shop-1"})
    body = CreateDatabaseRequest(name="shop")
    first = create_database.sync_detailed(client=retrying, body=body)
    again = create_database.sync_detailed(client=retrying, body=body)
    assert (first.status_code, again.status_code) == (201, 201), again.content
    assert again.parsed.uuid == first.parsed.uuid
    assert [d.name for d in list_databases.sync(client=client).data] == ["shop"]

    # The same key with another body is a mistake of the client's, not a retry.
    other = create_database.sync_detailed(client=retrying, body=CreateDatabaseRequest(name="bar"))
    assert other.status_code == 422, other.content
    assert isinstance(other.parsed, Error) and other.parsed.code == ErrorCode.IDEMPOTENCY_MISMATCH
    assert Database.objects.count() == 1


def test_a_subscription_and_its_refusals_reach_the_client_typed(
    generated: Path, portal: str, owner: User
) -> None:
    from tenantry_client.api.databases import create_database, get_database
    from tenantry_client.api.subscriptions import (
        change_subscription,
        get_subscription,
        link_database,
        list_subscriptions,
        renew_subscription,
        unlink_database,
    )
    from tenantry_client.models import (
        ChangeSubscriptionRequest,
        CreateDatabaseRequest,
        Error,
        ErrorCode,
        LinkDatabaseRequest,
        SubscriptionPeriod,
        SubscriptionState,
    )

    standard = Plan.objects.create(
        name="Standard", price_month=10, price_year=100, storage_bytes=10 * 1024**3,
        max_databases=1,
    )  # fmt: skip
    code = subscriptions.subscribe(owner, standard, period="year", users=2, by=None).code
    client = api_client(portal, owner)
    create_database.sync(client=client, body=CreateDatabaseRequest(name="shop"))
    create_database.sync(client=client, body=CreateDatabaseRequest(name="depot"))
    assert isinstance(get_database.sync("shop", client=client).trial_ends_at, datetime)

    answer = link_database.sync_detailed(code, client=client, body=LinkDatabaseRequest(name="shop"))
    assert answer.status_code == 201, answer.content
    shop = answer.parsed
    assert (shop.subscription, shop.trial_ends_at, shop.expired) == (code, None, False)
    assert shop.limit_bytes == 10 * 1024**3
    (listed,) = list_subscriptions.sync(client=client).data
    assert (listed.state, listed.period, listed.databases) == (
        SubscriptionState.ACTIVE, SubscriptionPeriod.YEAR, ["shop"]
    )  # fmt: skip
    assert change_subscription.sync(
        code, client=client, body=ChangeSubscriptionRequest(users=3)
    ).users == 3  # fmt: skip
    renewed = renew_subscription.sync(code, client=client)
    assert [(i.users, i.amount, i.paid) for i in renewed.invoices] == [
        (3, "300.00", False), (2, "200.00", False)
    ]  # fmt: skip

    def error(answer: Any, status: int, code: ErrorCode) -> str:
        assert answer.status_code == status, answer.content
        assert isinstance(answer.parsed, Error) and answer.parsed.code == code
        return answer.parsed.detail  # type: ignore[no-any-return]

    answer = link_database.sync_detailed(
        code, client=client, body=LinkDatabaseRequest(name="depot")
    )
    assert "has its 1 database" in error(answer, 409, ErrorCode.LIMIT)
    answer = get_subscription.sync_detailed("M0000-NONE", client=client)
    assert error(answer, 404, ErrorCode.NOT_FOUND) == "No subscription “M0000-NONE”."
    assert unlink_database.sync_detailed(code, "shop", client=client).status_code == 204
    assert get_subscription.sync(code, client=client).databases == []
