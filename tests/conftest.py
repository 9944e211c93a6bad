"""Shared fixtures: named people, a signed-in client, TOTP codes, and mail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.test import Client
from django_tasks_db.models import DBTaskResult

from tenantry.accounts.models import ApiKey, User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database, Membership
from tenantry.engines.models import Server
from tenantry.workspace.releases import LATEST

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

# Real servers for the tests that need them: PostgreSQL (started with initdb) and SMTP;
# and a real browser (Chromium through Playwright).
pytest_plugins = [
    "tests.postgres",
    "tests.redis_server",
    "tests.smtp",
    "tests.browser",
    "tests.dnsserver",
]

PASSWORD = "correct horse battery staple"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives Chromium carries the `browser` marker (it asks for the `browser`
    fixture), so a run may leave them out: -m "not browser"."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


def make_account(email: str, password: str = PASSWORD, verified: bool = True) -> User:
    user = User.objects.create_user(email, password)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    return user


def totp_code(secret: str) -> str:
    """The code an authenticator app shows now.

    allauth accepts only the current 30-second window (no tolerance), so a code taken in the
    window's last seconds could be stale when it reaches the server: wait for the next one.
    """
    if 30 - time.time() % 30 < 8:
        time.sleep(30 - time.time() % 30 + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def sign_in(client: Client, email: str, password: str = PASSWORD, code: str | None = None) -> None:
    response = client.post("/accounts/login/", {"login": email, "password": password})
    assert response.status_code == 302, response.content.decode()[:2000]
    if code is not None:
        assert response["Location"] == "/accounts/2fa/authenticate/"
        response = client.post("/accounts/2fa/authenticate/", {"code": code})
        assert response.status_code == 302, response.content.decode()[:2000]


def run_tasks() -> None:
    """What the worker does with the tasks that wait (invitation mails...)."""
    for result in DBTaskResult.objects.ready():
        result.task.call(*result.args_kwargs["args"], **result.args_kwargs["kwargs"])
        result.delete()


def reauthenticate(client: Client, password: str = PASSWORD) -> None:
    response = client.post("/accounts/reauthenticate/", {"password": password})
    assert response.status_code == 302, response.content.decode()[:2000]


@pytest.fixture
def alice(db: None) -> User:
    return make_account("alice@example.com")


@pytest.fixture
def bob(db: None) -> User:
    return make_account("bob@example.com")


@pytest.fixture
def alice_client(alice: User) -> Client:
    return client_for(alice)


# The named people of the database tests: the owner administers, the member uses, the
# outsider has nothing to do with it.
@pytest.fixture(params=["sqlite", "postgresql"])
def engine_kind(request: pytest.FixtureRequest, db: None) -> Iterator[str]:
    """New databases go to SQLite, or to a registered PostgreSQL server when there is one."""
    if request.param == "postgresql":
        pg: PostgresServer = request.getfixturevalue("pg_server")
        server = Server(name="pg-test")
        server.url = pg.url
        server.save()
    yield request.param
    for database in Database.objects.all():
        lifecycle.drop_storage(database)


@pytest.fixture
def owner(db: None) -> User:
    return make_account("owner@example.com")


@pytest.fixture
def member(db: None) -> User:
    return make_account("member@example.com")


@pytest.fixture
def outsider(db: None) -> User:
    return make_account("outsider@example.com")


@pytest.fixture
def staff(db: None) -> User:
    """A member of Tenantry's staff (the support desk), made so by its command."""
    from django.core.management import call_command

    user = make_account("agent@tenantry.test")
    call_command("staff", "add", user.email)
    user.refresh_from_db()
    return user


def client_for(user: User) -> Client:
    """A portal client signed in as `user`, without the sign-in form: tests of signing in (2FA,
    lock-outs, the sessions list) call sign_in(), which goes through allauth's flow."""
    client = Client()
    client.force_login(user)
    return client


def api(user: User) -> Client:
    user.developer_mode = True
    user.save()
    _, raw = ApiKey.objects.issue(user, "test")
    return Client(headers={"Authorization": f"Bearer {raw}"})


def database_records(owner: User, count: int, prefix: str) -> None:
    """Database records without storage: enough for the manager page (tests and bench)."""
    databases = Database.objects.bulk_create(
        Database(name=f"{prefix}-{i}", physical_name=f"tn_{prefix}{i}", engine="sqlite",
                 release=LATEST, status="active", size_bytes=1024 * i)
        for i in range(count)
    )  # fmt: skip
    Membership.objects.bulk_create(
        Membership(database=d, user=owner, role="admin") for d in databases
    )
