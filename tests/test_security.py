from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from django.test import Client

from tests.conftest import PASSWORD, make_account
from tests.test_cli import TENANTRY, env_for


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    env.update(
        TENANTRY_PORTAL_URL="https://portal.example.com",
        TENANTRY_EMAIL_URL="smtp://mailer:pw@mail.example.com:587?tls=1",
        TENANTRY_SECRET_KEY=os.urandom(32).hex() + "-Production-Secret-Key",
    )
    result = subprocess.run(
        [TENANTRY, "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_pages_send_secure_headers(db: None) -> None:
    response = Client().get("/accounts/login/")
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
    assert b"Sign In" not in response.content


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
