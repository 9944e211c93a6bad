"""Lock-outs that an attacker elsewhere cannot cause, and 2FA after a database password.

Wrong passwords are counted per account and client address: guesses from one address lock
that address out, with a sentence that says for how long, while the owner at another address
(or already signed in there) goes on. Each client below has its own `REMOTE_ADDR`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.hashers import make_password
from django.http.response import HttpResponseBase
from django.test import Client
from pytest_django.fixtures import Settings

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tests.conftest import (
    PASSWORD,
    client_for,
    database_records,
    make_account,
    reauthenticate,
    totp_code,
)
from tests.helpers import DB_PASSWORD, enable_totp

# Its lookups and limits live in the caches: each test runs with them in the control
# database, then in Redis (tests/redis_server.py).
pytestmark = pytest.mark.usefixtures("both_caches")

OWNER_ADDRESS = "198.51.100.7"
ATTACKER_ADDRESS = "203.0.113.66"


def at(address: str, **headers: str) -> Client:
    return Client(REMOTE_ADDR=address, **headers)


def portal_sign_in(client: Client, email: str, password: str) -> HttpResponseBase:
    return client.post("/accounts/login/", {"login": email, "password": password})


def refusal(response: HttpResponseBase) -> str:
    """The "Too many failed attempts" sentence on the page, if any."""
    sentence = r"Too many failed attempts\. Try again in \d+ minutes?\."
    found = re.search(sentence, response.content.decode())
    return found.group(0) if found else ""


def hidden_next(response: HttpResponseBase) -> str:
    """Where the page's sign-in form sends the person on (its hidden `next` field)."""
    found = re.search(r'name="next" value="([^"]*)"', response.content.decode())
    return found.group(1) if found else ""


def wait_for(window: float) -> None:
    time.sleep(window + 0.2)


# The portal's sign-in


def test_an_attacker_elsewhere_cannot_lock_the_owner_out(owner: User) -> None:
    attacker = at(ATTACKER_ADDRESS)
    for _ in range(6):
        response = portal_sign_in(attacker, owner.email, "a guess")
    assert refusal(response) == "Too many failed attempts. Try again in 5 minutes."
    # At the attacker's address even the right password waits out the five minutes.
    response = portal_sign_in(attacker, owner.email, PASSWORD)
    assert response.status_code == 200
    assert refusal(response) == "Too many failed attempts. Try again in 5 minutes."
    # The owner, at home, signs in as always.
    response = portal_sign_in(at(OWNER_ADDRESS), owner.email, PASSWORD)
    assert response.status_code == 302


def test_guesses_from_many_addresses_leave_only_known_devices_in(
    owner: User, settings: Settings
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed_account": "5/h/key",
    }
    home = at(OWNER_ADDRESS)  # the owner's own browser, signed in once before
    assert portal_sign_in(home, owner.email, PASSWORD).status_code == 302
    home.post("/accounts/logout/")
    for n in range(5):  # a botnet: one guess from each address, under each address's limit
        response = portal_sign_in(at(f"203.0.113.{n + 1}"), owner.email, "a guess")
        assert refusal(response) == ""
    stranger = portal_sign_in(at("203.0.113.99"), owner.email, PASSWORD)
    assert stranger.status_code == 200
    assert "sign in from a device you have used before" in stranger.content.decode()
    # The owner's browser gets in, from wherever it is now.
    travelling = home.post(
        "/accounts/login/",
        {"login": owner.email, "password": PASSWORD},
        REMOTE_ADDR="192.0.2.200",
    )
    assert travelling.status_code == 302


def test_a_device_known_to_another_account_does_not_pass_the_account_limit(
    owner: User, settings: Settings
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed_account": "3/h/key",
    }
    attacker = at(ATTACKER_ADDRESS)  # signed in to their own account: a device cookie, theirs
    make_account("mallory@example.com")
    assert portal_sign_in(attacker, "mallory@example.com", PASSWORD).status_code == 302
    attacker.post("/accounts/logout/")
    for n in range(3):
        portal_sign_in(at(f"203.0.113.{n + 1}"), owner.email, "a guess")
    forged = at("203.0.113.50")
    forged.cookies["tenantry_device"] = str(owner.pk)  # unsigned: not a device of the owner
    for client in (attacker, forged):
        response = client.post(
            "/accounts/login/",
            {"login": owner.email, "password": PASSWORD},
            REMOTE_ADDR="203.0.113.60",
        )
        assert response.status_code == 200
        assert "sign in from a device you have used before" in response.content.decode()


def test_good_sign_ins_from_new_places_do_not_count_as_guesses(
    owner: User, settings: Settings
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed_account": "3/h/key",
    }
    for n in range(5):
        assert portal_sign_in(at(f"192.0.2.{n + 1}"), owner.email, PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("window", "sentence"),
    [
        ("50s", "Try again in 1 minute."),
        ("90s", "Try again in 2 minutes."),
        ("1h", "Try again in 60 minutes."),
    ],
)
def test_the_refusal_says_when_to_try_again_from_the_real_window(
    owner: User, settings: Settings, window: str, sentence: str
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed": f"10/m/ip,3/{window}/key",
    }
    client = at(ATTACKER_ADDRESS)
    for _ in range(3):
        assert refusal(portal_sign_in(client, owner.email, "a guess")) == ""
    assert refusal(portal_sign_in(client, owner.email, PASSWORD)).endswith(sentence)


def test_guessing_many_accounts_from_one_address_stays_limited(owner: User) -> None:
    guesser = at(ATTACKER_ADDRESS)
    for n in range(10):
        assert refusal(portal_sign_in(guesser, f"someone{n}@example.com", "a guess")) == ""
    # Past ten a minute, that address waits, whichever account it tries next.
    response = portal_sign_in(guesser, owner.email, PASSWORD)
    assert refusal(response) == "Too many failed attempts. Try again in 1 minute."
    assert portal_sign_in(at(OWNER_ADDRESS), owner.email, PASSWORD).status_code == 302


def test_next_is_kept_through_a_refused_sign_in_and_followed_after_the_wait(
    owner: User, settings: Settings
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS,
        "login_failed": "10/m/ip,2/2s/key",
    }
    client = at(OWNER_ADDRESS)
    page = client.get("/accounts/login/?next=/account/security/")
    for password in ("a typo", "another typo", PASSWORD):
        # As a browser does: the form's fields, its hidden `next` among them.
        page = client.post(
            "/accounts/login/",
            {"login": owner.email, "password": password, "next": hidden_next(page)},
        )
    assert refusal(page) == "Too many failed attempts. Try again in 1 minute."
    assert hidden_next(page) == "/account/security/"
    wait_for(2)
    response = client.post(
        "/accounts/login/", {"login": owner.email, "password": PASSWORD, "next": hidden_next(page)}
    )
    assert response.status_code == 302 and response["Location"] == "/account/security/"


# Re-authentication ("confirm your password", before deleting a database)


def test_reauthentication_is_not_locked_by_failures_from_other_addresses(
    owner: User, settings: Settings
) -> None:
    settings.ACCOUNT_REAUTHENTICATION_TIMEOUT = 1  # the sign-in below is not recent enough
    database_records(owner, 1, "acme")
    owner_client = client_for(owner)
    owner_client.defaults["REMOTE_ADDR"] = OWNER_ADDRESS
    attacker = at(ATTACKER_ADDRESS)
    for _ in range(6):
        portal_sign_in(attacker, owner.email, "a guess")
    wait_for(1)
    # Confirming the deletion asks for the password, then goes on with the deletion.
    response = owner_client.post("/databases/acme-0/delete/", {"confirm": "acme-0"})
    assert (
        response["Location"] == "/accounts/reauthenticate/?next=%2Fdatabases%2Facme-0%2Fdelete%2F"
    )
    response = owner_client.post(response["Location"], {"password": PASSWORD})
    assert response.status_code == 302, refusal(response)
    assert response["Location"].startswith("/operations/")


def test_reauthentication_failures_lock_that_person_at_that_address_only(owner: User) -> None:
    here, elsewhere = client_for(owner), client_for(owner)
    here.defaults["REMOTE_ADDR"] = OWNER_ADDRESS
    for _ in range(5):
        here.post("/accounts/reauthenticate/", {"password": "a slip"})
    response = here.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 200
    assert refusal(response) == "Too many failed attempts. Try again in 5 minutes."
    reauthenticate(elsewhere)  # the same person's other device, at another address


# Signing in to a database


@pytest.fixture
def acme(owner: User) -> Iterator[Database]:
    database = lifecycle.create("acme", by=owner)  # SQLite: what is tested is the same
    yield database
    lifecycle.drop_storage(database)


def visitor(address: str) -> Client:
    return at(address, HTTP_HOST="acme.localhost")


def sign_in_db(client: Client, login: str, password: str, path: str = "/login/") -> str:
    """Post the database's sign-in form; where it sends the person next, or its error."""
    response = client.post(path, {"login": login, "password": password})
    if response.status_code != 302:
        return " ".join(response.context["form"].non_field_errors())
    return str(response["Location"])


def is_signed_in(client: Client) -> bool:
    response = client.get("/")
    return response.status_code == 200 and b"Sign out" in response.content


def set_database_password(database: Database, login: str, password: str) -> None:
    with tenant.using(database) as db:
        ws.User.objects.using(db).filter(login=login).update(password=make_password(password))


def test_an_attacker_elsewhere_cannot_lock_the_owner_out_of_a_database(
    acme: Database, owner: User
) -> None:
    attacker = visitor(ATTACKER_ADDRESS)
    for _ in range(5):
        assert sign_in_db(attacker, owner.email, "a guess") == "Wrong login or password."
    locked = "Too many failed attempts. Try again in 5 minutes."
    assert sign_in_db(attacker, owner.email, PASSWORD) == locked
    # Neither the database's limit nor the account's across databases stops the owner.
    owner_client = visitor(OWNER_ADDRESS)
    assert sign_in_db(owner_client, owner.email, PASSWORD) == "/"
    assert is_signed_in(owner_client)


def test_next_is_kept_through_a_refused_database_sign_in(
    acme: Database, owner: User, settings: Settings
) -> None:
    rates = {**settings.ACCOUNT_RATE_LIMITS, "workspace_login_failed": "10/m/ip,2/2s/key"}
    settings.ACCOUNT_RATE_LIMITS = rates
    client = visitor(OWNER_ADDRESS)
    response = client.get("/contacts/")
    assert response["Location"] == "/login/?next=/contacts/"
    for password in ("a typo", "another typo"):
        assert sign_in_db(client, owner.email, password, response["Location"]).startswith("Wrong")
    refused = sign_in_db(client, owner.email, PASSWORD, response["Location"])
    assert refused == "Too many failed attempts. Try again in 1 minute."
    wait_for(2)
    assert sign_in_db(client, owner.email, PASSWORD, response["Location"]) == "/contacts/"


def test_a_database_password_of_a_2fa_account_asks_for_its_code(
    acme: Database, owner: User
) -> None:
    set_database_password(acme, owner.email, DB_PASSWORD)
    portal = client_for(owner)
    reauthenticate(portal)
    secret = enable_totp(portal)
    client = visitor(OWNER_ADDRESS)
    assert sign_in_db(client, owner.email, DB_PASSWORD, "/login/?next=/contacts/") == (
        "/login/code/?next=/contacts/"
    )
    assert not is_signed_in(client)
    response = client.post("/login/code/?next=/contacts/", {"code": "000000"})
    assert "Wrong code" in response.content.decode()
    assert not is_signed_in(client)
    response = client.post("/login/code/?next=/contacts/", {"code": totp_code(secret)})
    assert response.status_code == 302 and response["Location"] == "/contacts/"
    assert is_signed_in(client)
    # Still a database-password session: changing that password ends it.
    set_database_password(acme, owner.email, "yet another database passphrase")
    assert not is_signed_in(client)


def test_a_database_password_of_a_passkey_only_account_is_refused(
    acme: Database, owner: User
) -> None:
    set_database_password(acme, owner.email, DB_PASSWORD)
    # What a registered passkey leaves in the control database (its key material is not
    # looked at here: the workspace cannot ask for a passkey at all).
    Authenticator.objects.create(user=owner, type=Authenticator.Type.WEBAUTHN, data={})
    client = visitor(OWNER_ADDRESS)
    refused = sign_in_db(client, owner.email, DB_PASSWORD)
    assert refused == "Your account signs in with a passkey. Use Connect in your database manager."
    assert not is_signed_in(client)


def test_a_database_password_without_2fa_still_signs_in_directly(
    acme: Database, owner: User
) -> None:
    set_database_password(acme, owner.email, DB_PASSWORD)
    client = visitor(OWNER_ADDRESS)
    assert sign_in_db(client, owner.email, DB_PASSWORD) == "/"
    assert is_signed_in(client)
