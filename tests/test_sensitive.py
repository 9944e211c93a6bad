"""Passwords and codes never reach an error report: every view that takes one marks it
sensitive, so Django's reporter (mailed to admins, logged) shows stars instead."""

from __future__ import annotations

import pytest
from django.test import Client
from django.views.debug import SafeExceptionReporterFilter

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tests.conftest import client_for

SECRET = "a secret that must not be reported"


def reported(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)  # type: ignore[no-any-return]


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/login/", ["password"]),
        ("/login/code/", ["code"]),
        ("/preferences/", ["current_password", "new_password", "confirm_password"]),
        ("/connect/", ["token"]),
    ],
)
def test_the_workspace_marks_its_secrets_sensitive(
    engine_kind: str, owner: User, path: str, fields: list[str]
) -> None:
    lifecycle.create("acme", by=owner)
    client = Client(HTTP_HOST="acme.localhost")
    response = client.post(path, {"login": owner.email, **dict.fromkeys(fields, SECRET)})
    shown = reported(response)
    for field in fields:
        assert shown[field] != SECRET and set(shown[field]) == {"*"}
    assert shown["login"] == owner.email  # the rest stays readable


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/accounts/login/", ["password"]),
        ("/accounts/signup/", ["password1", "password2"]),
        ("/accounts/reauthenticate/", ["password"]),
        ("/accounts/2fa/authenticate/", ["code"]),
        ("/accounts/2fa/reauthenticate/", ["code"]),
        ("/accounts/2fa/totp/activate/", ["code"]),
        ("/account/email/confirm/", ["code"]),
        ("/accounts/password/change/", ["oldpassword", "password1", "password2"]),
    ],
)
def test_the_portal_marks_its_secrets_sensitive(owner: User, path: str, fields: list[str]) -> None:
    client = client_for(owner) if "login" not in path and "signup" not in path else Client()
    response = client.post(path, {"login": owner.email, **dict.fromkeys(fields, SECRET)})
    shown = reported(response)
    for field in fields:
        assert shown[field] != SECRET and set(shown[field]) == {"*"}
