from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.settings import caches_for
from tests.conftest import PASSWORD, make_account, reauthenticate, sign_in, totp_code
from tests.helpers import TENANTRY, enable_totp, env_for
from tests.postgres import PostgresServer


@pytest.mark.slow
@pytest.mark.parametrize("control", ["sqlite", "postgresql"])
def test_check_deploy_is_clean_with_production_settings(
    tmp_path: Path, control: str, request: pytest.FixtureRequest
) -> None:
    env = env_for(tmp_path)
    env.update(
        TENANTRY_PORTAL_URL="https://portal.example.com",
        TENANTRY_EMAIL_URL="smtp://mailer:pw@mail.example.com:587?tls=1",
        TENANTRY_SECRET_KEY=secrets.token_urlsafe(48),  # 64 random characters
    )
    if control == "postgresql":  # production's control plane; its checks run against it
        pg: PostgresServer = request.getfixturevalue("pg_server")
        env["TENANTRY_DATABASE_URL"] = pg.url
    result = subprocess.run(
        [TENANTRY, "check", "--deploy", "--database", "default", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing silenced either: SILENCED_SYSTEM_CHECKS stays empty.
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout


@pytest.mark.parametrize(
    "host", ["testserver", "unknown.example.net", "no-such-database.localhost"]
)
def test_pages_send_secure_headers(db: None, host: str) -> None:
    """The portal's pages, and the gateway's own answers on other hosts, alike."""
    response = Client(HTTP_HOST=host).get("/accounts/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


def test_forms_refuse_posts_without_a_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"login": "a@example.com", "password": "x"})
    assert response.status_code == 403


def test_an_unknown_host_is_refused(db: None) -> None:
    # The gateway answers a plain 404 before the portal sees the request.
    response = Client(HTTP_HOST="evil.example.net").get("/accounts/login/")
    assert response.status_code == 404
    assert b"nothing at this address" in response.content
    assert b"Sign in" not in response.content


def test_sign_in_sends_a_person_on_within_the_portal_only(db: None) -> None:
    """Not to a subdomain of the base domain, though those are allowed hosts (databases)."""
    make_account("alice@example.com")
    for target, landing in [
        ("/account/", "/account/"),
        ("http://evil.localhost/phish", "/"),
        ("http://a.b.localhost/", "/"),
        ("https://example.org/", "/"),
    ]:
        response = Client().post(
            f"/accounts/login/?next={quote(target)}",
            {"login": "alice@example.com", "password": PASSWORD},
        )
        assert response["Location"] == landing, target


# The cache flood: anyone, without signing in, asks for made-up database hosts. Rate limits
# and used 2FA codes must outlive it (Django's database cache culls by key order, and
# allauth's keys sort first).


@pytest.fixture(params=["database", "redis"])
def cache_kind(request: pytest.FixtureRequest, settings: Any) -> str:
    """The caches in the control database (the embedded default), or in a real Redis."""
    if request.param == "redis":
        settings.CACHES = caches_for(request.getfixturevalue("redis_url"))
    return request.param  # type: ignore[no-any-return]


def flood(requests: int = 400) -> None:
    client = Client()
    for _ in range(requests):
        assert client.get("/", HTTP_HOST=f"{secrets.token_hex(8)}.localhost").status_code == 404


def test_a_flood_of_unknown_hosts_does_not_reset_the_sign_in_limits(
    db: None, cache_kind: str
) -> None:
    make_account("alice@example.com")
    attacker = Client(REMOTE_ADDR="198.51.100.1")
    for _ in range(5):
        attacker.post("/accounts/login/", {"login": "alice@example.com", "password": "guess"})

    def locked_out() -> bool:
        response = attacker.post(
            "/accounts/login/", {"login": "alice@example.com", "password": PASSWORD}
        )
        return response.status_code != 302

    assert locked_out()
    flood()
    assert locked_out()


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_flood_does_not_reset_the_workspace_limits_or_its_cached_lookups(
    engine_kind: str, owner: User, cache_kind: str
) -> None:
    acme = lifecycle.create("acme", by=owner)
    workspace = Client(HTTP_HOST="acme.localhost")
    for _ in range(5):
        workspace.post("/login/", {"login": owner.email, "password": "guess"})

    def locked_out() -> bool:
        response = workspace.post("/login/", {"login": owner.email, "password": PASSWORD})
        return response.status_code != 302

    assert locked_out()
    flood()
    assert locked_out()
    # The made-up names were not kept; the real database's lookup was.
    assert caches["gateway"].get(f"tenantry:site:{acme.name}") is not None
    if cache_kind == "database":
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM tenantry_gateway_cache")
            assert cursor.fetchone()[0] == 1
    else:
        keys = redis.Redis.from_url(settings.CACHES["gateway"]["LOCATION"]).keys("*site*")
        assert len(keys) == 1


def test_a_flood_does_not_let_a_used_2fa_code_in_again(alice_client: Client, alice: User) -> None:
    reauthenticate(alice_client)
    secret = enable_totp(alice_client)
    code = totp_code(secret)
    sign_in(Client(), alice.email, code=code)
    flood()
    thief = Client()
    thief.post("/accounts/login/", {"login": alice.email, "password": PASSWORD})
    response = thief.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 200 and "Incorrect code" in response.content.decode()


def test_hosts_that_are_no_dns_label_cost_no_lookup(db: None) -> None:
    for label in ["a" * 64, "-acme", "acme-", "ac_me", "ac%20me", "a.b"]:
        with CaptureQueriesContext(connection) as queries:
            response = Client().get("/", HTTP_HOST=f"{label}.localhost")
        assert response.status_code == 404 and b"nothing at this address" in response.content
        assert not queries.captured_queries, label
