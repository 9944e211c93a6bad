"""Plain helpers shared by several test files (fixtures live in conftest.py and browser.py).

A test file imports from here, from conftest.py or from the servers' modules, never from
another test file: importing a test file would also collect its tests a second time under
another name and tie the two files' edits together.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from allauth.mfa.webauthn.internal.auth import WebAuthn
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth.hashers import make_password
from django.test import Client, TestCase
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from fido2.cose import ES256
from fido2.utils import sha256
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    RegistrationResponse,
)

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.billing.models import Plan, Subscription
from tenantry.databases.models import Database
from tenantry.operations import due
from tenantry.operations.models import Operation
from tenantry.operations.tasks import recover, run_operation
from tenantry.workspace import models as ws
from tenantry.workspace import releases, tenant
from tests.conftest import PASSWORD, totp_code
from tests.postgres import control_url, copy_control_database

# Operations


def run_pending() -> None:
    """What the worker does: run every operation that waits."""
    for operation in Operation.objects.filter(state="queued"):
        run_operation.call(operation.pk)


# Support requests and the support desk


def send_request(client: Client, capture: Any, **fields: Any) -> Any:
    """Post the Contact support form (its mails queued on commit: `capture` is pytest-django's
    django_capture_on_commit_callbacks)."""
    data = {"category": "technical", "subject": "It is slow", "description": "Since Monday."}
    with capture(execute=True):
        return client.post("/support/new/", data | fields)


def desk_client(user: User, *, raise_errors: bool = True) -> Client:
    """A staff member at the desk: signed in, the password confirmed just now (without
    `raise_errors`, a 500 is an answer, as a browser gets it)."""
    client = Client(raise_request_exception=raise_errors)
    client.force_login(user)
    response = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:2000]
    return client


def run_due_jobs(now: datetime) -> None:
    """The databases' scheduled jobs due by `now`, as the sweep hands them to the workers
    (operations.due) and a worker runs them; the other tasks wait."""
    due.claim(now)
    for result in DBTaskResult.objects.ready().filter(task_path__endswith=".run_jobs"):
        result.task.call(*result.args_kwargs["args"], **result.args_kwargs["kwargs"])
        result.delete()


def killed_while_holding(hold: AbstractContextManager[None]) -> None:
    """Enter `hold` in a child process that is then killed (kill -9), as a worker may be."""
    with warnings.catch_warnings():
        # Python warns of a fork in a process with threads (the tenant pool's reaper, a live
        # server's): the child uses none of them, and only takes the hold before it dies.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            with hold:
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child did not get to its hold within a minute")
        time.sleep(0.05)


def run_again(operation: Operation) -> Operation:
    """What follows a worker killed in the middle of the operation: it goes quiet, another
    worker is handed it and runs it again."""
    long_ago = timezone.now() - timedelta(minutes=5)
    Operation.objects.filter(pk=operation.pk).update(state="running", heartbeat_at=long_ago)
    assert recover() == 1
    run_operation.call(operation.pk)
    operation.refresh_from_db()
    return operation


def write(database: Database) -> None:
    with tenant.using(database) as db:
        Contact = releases.model(database.release, "Contact")
        Contact.objects.using(db).create(name="written by a user")


# Subscriptions


def subscribed(database: Database, owner: User, **plan: object) -> Subscription:
    """A yearly subscription of `owner`, its first invoice paid, on a plan of 5 databases and
    10 GB, that pays for `database`."""
    values = {
        "name": "Standard", "price_month": Decimal("10"), "price_year": Decimal("100"),
        "storage_bytes": 10 * 1024**3, "max_databases": 5,
    } | plan  # fmt: skip
    found, _ = Plan.objects.get_or_create(name=values.pop("name"), defaults=values)
    subscription = subscriptions.subscribe(owner, found, period="year", users=5, by=None)
    subscriptions.pay(subscription.invoices.get())  # type: ignore[attr-defined]
    subscriptions.link(subscription, database, by=None)
    return subscription


# The portal's two-factor authentication


def enable_totp(client: Client) -> str:
    """Turn on TOTP through the pages, as a person would; return the secret."""
    response = client.get("/accounts/2fa/totp/activate/")
    assert response.status_code == 200, response
    secret = response.context["form"].secret
    # allauth sends its signals and mails on commit, which a test transaction never reaches.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    return secret


# A database at its own address (TENANTRY_BASE_DOMAIN is `localhost` in the tests)

DB_PASSWORD = "a database-only passphrase 42"
# What a browser sends with the portal's Connect form (its page asks for the origin).
PORTAL_ORIGIN = "http://127.0.0.1:8000"


def host(name: str) -> str:
    return f"{name}.localhost"


def visitor(name: str) -> Client:
    return Client(HTTP_HOST=host(name))


def sign_in_db(client: Client, login: str, password: str) -> str:
    """Post the database's sign-in form; returns where it sends the person next."""
    response = client.post("/login/", {"login": login, "password": password})
    if response.status_code != 302:
        errors = response.context["form"].non_field_errors()
        return " ".join(errors)
    return response["Location"]


def signed_in(database: Database, user: User) -> Client:
    """A client signed in to the database's own pages with the account's password."""
    client = visitor(database.name or "")
    assert sign_in_db(client, user.email, PASSWORD) == "/"
    return client


def set_db_password(database: Database, login: str, password: str) -> None:
    with tenant.using(database) as db:
        ws.User.objects.using(db).filter(login=login).update(password=make_password(password))


def connect_token(client: Client, name: str) -> str:
    """Ask the portal (`client` is signed in there) for a Connect token to database `name`."""
    response = client.post(f"/databases/{name}/connect/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "strict-origin"
    return response.context["token"]  # type: ignore[no-any-return]


# The `tenantry` command, as a real process on a data dir of its own

ROOT = Path(__file__).resolve().parent.parent
TENANTRY = str(Path(sys.executable).parent / "tenantry")


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "DJANGO_"))}
    env.update(TENANTRY_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    # With a PostgreSQL control plane (TENANTRY_TEST_CONTROL), the commands' is one too: a
    # database of the data dir's own on the same server.
    if (url := control_url(data_dir)) is not None:
        env["TENANTRY_DATABASE_URL"] = url
    return env


def copy_data_dir(source: Path, target: Path) -> None:
    """A copy of a data dir that commands made, their control database with it."""
    shutil.copytree(source, target)
    copy_control_database(source, target)


@contextmanager
def control_db(data_dir: Path) -> Iterator[sqlite3.Connection | psycopg.Connection[Any]]:
    """A connection to the control database of the commands run on `data_dir`, to read it
    directly (`db.execute(sql).fetchone()`) while they run; each read sees the latest commit."""
    url = control_url(data_dir)
    db = (
        sqlite3.connect(data_dir / "tenantry.sqlite3", timeout=5)
        if url is None
        else psycopg.connect(url, autocommit=True)
    )
    try:
        yield db
    finally:
        db.close()


def tenantry(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TENANTRY, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(data_dir),
        timeout=120,
    )


def add_security_key(user: User) -> None:
    """A registered security key, as a browser and authenticator would have made it."""
    key = ec.generate_private_key(ec.SECP256R1())
    credential_id = os.urandom(16)
    credential = AttestedCredentialData.create(
        Aaguid.NONE, credential_id, ES256.from_cryptography_key(key.public_key())
    )
    flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.AT
    data = AuthenticatorData.create(sha256(b"localhost"), flags, 0, credential)
    client_data = CollectedClientData.create(
        type=CollectedClientData.TYPE.CREATE, challenge=os.urandom(16), origin="http://localhost"
    )
    response = RegistrationResponse(
        raw_id=credential_id,
        response=AuthenticatorAttestationResponse(
            client_data=client_data, attestation_object=AttestationObject.create("none", data, {})
        ),
    )
    WebAuthn.add(user, "Laptop", dict(response))
