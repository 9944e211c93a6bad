"""The `tenantry` command as an operator runs it: a real process on a real data dir."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.helpers import TENANTRY, env_for, tenantry
from tests.postgres import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    """`tenantry serve` on a fresh data dir: it migrates by itself."""
    port = free_port()
    log = (data_dir / "serve.log").open("w")  # what the person who started it reads
    proc = subprocess.Popen(
        [TENANTRY, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env_for(data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/accounts/login/", timeout=10)
            break
        except OSError:  # refused, reset, or a first answer slower than the timeout
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("serve did not start:\n" + serve_log(data_dir))
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def serve_log(data_dir: Path) -> str:
    return (data_dir / "serve.log").read_text()


def browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def sign_in(url: str, email: str, password: str) -> tuple[urllib.request.OpenerDirector, str]:
    opener = browser()
    page = opener.open(url + "/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    form = {"csrfmiddlewaretoken": token.group(1), "login": email, "password": password}
    response = opener.open(url + "/accounts/login/", urllib.parse.urlencode(form).encode())
    return opener, response.geturl()


def test_serve_brings_up_the_portal_with_secure_headers(server: str) -> None:
    response = urllib.request.urlopen(server + "/accounts/login/")
    assert response.status == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Server"] == "granian"  # a production server, not runserver


def test_a_new_person_follows_the_link_of_the_mail_file_that_serve_names(
    server: str, data_dir: Path
) -> None:
    opener = browser()
    page = opener.open(server + "/accounts/signup/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    form = {
        "csrfmiddlewaretoken": token.group(1),
        "email": "newcomer@example.com",
        "password1": "a long and rare passphrase",
        "password2": "a long and rare passphrase",
    }
    opener.open(server + "/accounts/signup/", urllib.parse.urlencode(form).encode())

    # serve printed where the mail is (no port 8000 anywhere: the portal is where it listens)...
    printed = re.findall(r"Mail to newcomer@example.com written to (\S+)", serve_log(data_dir))
    assert len(printed) == 1, serve_log(data_dir)
    mail = Path(printed[0]).read_text()
    assert mail.startswith("From: ") and "Subject: [Tenantry] " in mail
    assert f"sign up for a Tenantry account at {server}." in mail
    assert ":8000" not in mail
    # ... and its link is whole on one line: open it and confirm.
    link = re.search(rf"{re.escape(server)}/accounts/confirm-email/\S+", mail)
    assert link, mail
    page = opener.open(link.group(0)).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token and "newcomer@example.com" in page
    opener.open(
        link.group(0), urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1)}).encode()
    )
    code = "from allauth.account.models import EmailAddress as E; print(E.objects.get(email=%r)"
    shown = tenantry(data_dir, "shell", "-c", code % "newcomer@example.com" + ".verified)").stdout
    assert shown.splitlines()[-1] == "True"


def test_accounts_create_then_sign_in_to_the_running_portal(server: str, data_dir: Path) -> None:
    result = tenantry(
        data_dir,
        "accounts",
        "create",
        "op@example.com",
        "--password-stdin",
        "--verified",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    _, landed = sign_in(server, "op@example.com", PASSWORD)
    assert landed.endswith("/databases/")


def test_an_unverified_account_must_verify_first(server: str, data_dir: Path) -> None:
    result = tenantry(
        data_dir,
        "accounts",
        "create",
        "unverified@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    _, landed = sign_in(server, "unverified@example.com", PASSWORD)
    assert landed.endswith("/accounts/confirm-email/")
    # The verification mail was written under the data dir, where a local user can read it.
    assert any("unverified@example.com" in p.read_text() for p in (data_dir / "mail").iterdir())


def test_accounts_create_errors_are_one_sentence_and_non_zero(data_dir: Path, server: str) -> None:
    tenantry(data_dir, "accounts", "create", "dup@example.com", "--password-stdin", stdin=PASSWORD)
    cases = [
        (["dup@example.com", "--password-stdin"], PASSWORD, "already exists"),
        (["not-an-email", "--password-stdin"], PASSWORD, "is not a valid email address"),
        (["weak@example.com", "--password-stdin"], "password", "too common"),
        (["empty@example.com", "--password-stdin"], "", "No password was given"),
    ]
    for args, stdin, message in cases:
        result = tenantry(data_dir, "accounts", "create", *args, stdin=stdin)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_apikeys_create_prints_a_key_that_the_api_accepts(server: str, data_dir: Path) -> None:
    tenantry(
        data_dir,
        "accounts",
        "create",
        "dev@example.com",
        "--password-stdin",
        "--verified",
        stdin=PASSWORD,
    )
    result = tenantry(data_dir, "apikeys", "create", "dev@example.com", "--name", "laptop")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert re.fullmatch(r"tnt_[\w-]{40,}", key)
    request = urllib.request.Request(
        server + "/api/v1/me", headers={"Authorization": f"Bearer {key}"}
    )
    assert json.load(urllib.request.urlopen(request))["email"] == "dev@example.com"

    result = tenantry(data_dir, "apikeys", "create", "nobody@example.com", "--name", "x")
    assert result.returncode != 0 and "no account" in result.stderr


def test_sign_in_rate_limits_hold_across_web_processes(server: str, data_dir: Path) -> None:
    # serve runs two web processes: the limit lives in the shared database cache, not in one.
    tenantry(
        data_dir,
        "accounts",
        "create",
        "target@example.com",
        "--password-stdin",
        "--verified",
        stdin=PASSWORD,
    )
    for _ in range(5):
        _, landed = sign_in(server, "target@example.com", "a wrong guess")
        assert landed.endswith("/accounts/login/")
    _, landed = sign_in(server, "target@example.com", PASSWORD)
    assert landed.endswith("/accounts/login/")


def test_serve_runs_a_task_worker(server: str, data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "touched"
    code = f"from tests.tasks import touch; touch.enqueue({str(target)!r})"
    result = tenantry(data_dir, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert target.read_text() == "done"


def test_a_bad_bind_address_is_a_clear_error(data_dir: Path) -> None:
    result = tenantry(data_dir, "serve", "--bind", "nonsense")
    assert result.returncode != 0
    assert "is not HOST:PORT" in result.stderr


def serving(url: str) -> int:
    """The pid of the `tenantry serve` listening at `url`."""
    bind = urllib.parse.urlsplit(url).netloc
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in words and bind.encode() in words:
            return int(cmdline.parent.name)
    raise AssertionError(f"no tenantry serve at {bind}")


def served_processes(pid: int) -> list[int]:
    """The process and its children (Granian's web workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def peak_memory_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found
    return int(found.group(1)) / 1024


def test_a_large_backup_uploads_and_restores_through_the_running_server(
    server: str, data_dir: Path, tmp_path: Path
) -> None:
    tenantry(data_dir, "accounts", "create", "big@example.com", "--password-stdin",
             "--verified", stdin=PASSWORD)  # fmt: skip
    key = tenantry(data_dir, "apikeys", "create", "big@example.com", "--name", "up").stdout.strip()
    assert tenantry(data_dir, "db", "create", "big", "--owner", "big@example.com").returncode == 0
    # 120 MB of files that do not compress, so the ZIP is as large.
    code = """
import os
from tenantry.databases.models import Database
from tenantry.engines import filestore
d = Database.objects.get(name="big")
filestore.store(d.physical_name, (os.urandom(1 << 20) for _ in range(120)))
"""
    assert tenantry(data_dir, "shell", "-c", code).returncode == 0
    backup = tmp_path / "big.zip"
    assert tenantry(data_dir, "db", "backup", "big", "-o", str(backup)).returncode == 0
    size = backup.stat().st_size
    assert size > 120 << 20

    # A multipart upload streamed from the file: the web server takes it whole, as it comes.
    boundary = "tenantry-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with backup.open("rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
        yield tail

    before = {pid: peak_memory_mb(pid) for pid in served_processes(serving(server))}
    host = urllib.parse.urlsplit(server)
    connection = http.client.HTTPConnection(host.hostname or "", host.port, timeout=120)
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Length": str(len(head) + size + len(tail)),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    connection.request("POST", "/api/v1/databases/big-restored/restore", body(), headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 202, answer

    request = urllib.request.Request(
        f"{server}/api/v1/operations/{answer['id']}", headers={"Authorization": f"Bearer {key}"}
    )
    deadline = time.monotonic() + 120
    while (state := json.load(urllib.request.urlopen(request)))["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["state"] == "done", state
    # No process of the server held the upload, or the restore, in memory: none grew by half
    # its size (a web worker receives it, the task worker beside them restores it).
    after = {pid: peak_memory_mb(pid) for pid in served_processes(serving(server))}
    grown = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert max(grown.values()) < size / 2 / (1 << 20), (grown, size)
    check = """
from tenantry.databases.models import Database
from tenantry.engines import filestore
d = Database.objects.get(name="big-restored")
print(sum(p.stat().st_size for p in filestore.root(d.physical_name).rglob("*") if p.is_file()))
"""
    assert tenantry(data_dir, "shell", "-v0", "-c", check).stdout.strip() == str(120 << 20)
