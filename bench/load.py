"""Load benchmark: the pages people and programs use most, under many clients at once.

`tenantry web` (Granian, the production server, `--workers 2` as by default) serves a fresh
data dir on 127.0.0.1; Debian's `wrk` sends requests from 50 connections at once for 60 s to
each target in turn:

- baseline: `/bench/ping`, a trivial Django view behind the whole middleware stack (served
  only with TENANTRY_BENCH=1, which the bench sets);
- portal: the database manager page (`/databases/`), signed in;
- workspace: a database's home (`/`) and its contacts (`/contacts/`) at `bench.localhost`,
  signed in there;
- API: `GET /api/v1/databases` with an API key.

Printed for each: requests a second, p50 and p99 latency, errors (target 0: a refused or
dropped connection, a timeout, an answer other than 2xx or 3xx), and p50 and p99 against the
baseline's.

    .venv/bin/python bench/load.py [--duration 60] [--clients 50] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _setup import ROOT, machine, setup_django, verdict, workdir

NAME = "bench"
PASSWORD = "a long bench passphrase 42"
CONTACTS = 50
STARTUP_SECONDS = 60
# wrk's own report, in microseconds and counts: its Lua `done` hook prints one line.
REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""


@dataclass
class Target:
    label: str
    path: str
    headers: dict[str, str]
    # What the page must contain, checked before the load: a sign-in page served instead of
    # the real one would be a 200 too, and a much cheaper one.
    expect: str


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def free_port() -> int:
    from tests.postgres import free_port

    return free_port()


def get(port: int, target: Target) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target.path, headers=target.headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


@contextmanager
def web_server(base: Path, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    """`tenantry web` on the bench's data dir, with the baseline's page; stopped afterwards."""
    # The API's limit per key (600 a minute) would refuse one client's key long before the
    # server is loaded: it is raised, its counting still done for every request.
    env = {**os.environ, "TENANTRY_BENCH": "1", "TENANTRY_API_RATE_LIMIT": str(10**9)}
    command = [sys.executable, "-m", "tenantry", "web", "--bind", f"127.0.0.1:{port}"]
    log = (base / "web.log").open("wb")
    web = subprocess.Popen(
        [*command, "--workers", str(workers)], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    ping = Target("baseline", "/bench/ping", {}, "pong")
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                status, _ = get(port, ping)
                if status == 200:
                    break
                raise RuntimeError(f"/bench/ping answered {status}")
            except ConnectionRefusedError:
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "tenantry web did not start:\n" + (base / "web.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield web
    finally:
        web.terminate()
        try:
            web.wait(30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
        log.close()


def prepare() -> dict[str, dict[str, str]]:
    """An account with its database `bench` (contacts in it), signed in to the portal and to
    the database, and an API key: the headers each kind of client sends."""
    from allauth.account.models import EmailAddress
    from django.conf import settings
    from django.test import Client

    from tenantry.accounts.models import ApiKey, User
    from tenantry.databases import lifecycle
    from tenantry.workspace import releases, tenant

    user = User.objects.create_user("bench@example.com", PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    user.developer_mode = True  # API keys work in developer mode only
    user.save(update_fields=["developer_mode"])
    _, key = ApiKey.objects.issue(user, "bench")
    database = lifecycle.create(NAME, by=user)
    Contact = releases.model(database.release, "Contact")
    with tenant.using(database) as db:
        Contact.objects.using(db).bulk_create(
            Contact(name=f"Contact {i}", email=f"contact{i}@example.com") for i in range(CONTACTS)
        )

    cookie = settings.SESSION_COOKIE_NAME
    portal = Client()
    portal.force_login(user)
    workspace = Client(HTTP_HOST=f"{NAME}.{settings.BASE_DOMAIN}")
    response = workspace.post("/login/", {"login": user.email, "password": PASSWORD})
    if response.status_code != 302:
        raise RuntimeError(f"Signing in to the database answered {response.status_code}")
    return {
        "portal": {"Cookie": f"{cookie}={portal.cookies[cookie].value}"},
        "workspace": {
            "Host": f"{NAME}.{settings.BASE_DOMAIN}",
            "Cookie": f"{cookie}={workspace.cookies[cookie].value}",
        },
        "api": {"Authorization": f"Bearer {key}"},
    }


def wrk(port: int, target: Target, clients: int, seconds: int, script: Path) -> Result:
    threads = min(clients, os.cpu_count() or 1)
    command = [
        "wrk", f"-c{clients}", f"-t{threads}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script),
    ]  # fmt: skip
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{port}{target.path}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^RESULT ((?:\d+ ?){9})$", output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    requests, duration, p50, p99, *errors = (int(n) for n in found.group(1).split())
    kinds = ("connect", "read", "write", "status", "timeout")
    return Result(
        requests, duration / 1e6, p50 / 1000, p99 / 1000, dict(zip(kinds, errors, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load per target")
    parser.add_argument("--clients", type=int, default=50, help="connections at once")
    parser.add_argument("--workers", type=int, default=2, help="tenantry web's processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("This benchmark needs wrk: apt-get install wrk")

    with workdir() as root:
        port = free_port()
        # The web server and this process share the data dir, so its secret key and sessions.
        os.environ["TENANTRY_PORTAL_URL"] = f"http://127.0.0.1:{port}"
        setup_django(root / "data")
        headers = prepare()
        targets = [
            Target("baseline: /bench/ping", "/bench/ping", {}, "pong"),
            Target("portal: the manager", "/databases/", headers["portal"], f">{NAME}<"),
            Target("workspace: home", "/", headers["workspace"], "Sign out"),
            Target("workspace: contacts", "/contacts/", headers["workspace"], "Contact 1"),
            Target("API: list databases", "/api/v1/databases", headers["api"], f'"{NAME}"'),
        ]
        print(f"{machine()} at start")
        print(
            f"tenantry web: {args.workers} workers; wrk: {args.clients} connections, "
            f"{args.duration} s a target"
        )
        script = Path(tempfile.mkstemp(suffix=".lua", dir=root)[1])
        script.write_text(REPORT)
        results: dict[str, Result] = {}
        with web_server(root, port, args.workers):
            for target in targets:
                for _ in range(20):  # warm: each worker's first requests open and cache
                    status, body = get(port, target)
                    if status != 200 or target.expect not in body:
                        raise RuntimeError(
                            f"{target.label} answered {status} without {target.expect!r}:"
                            f" {body[:300]!r}"
                        )
                results[target.label] = wrk(port, target, args.clients, args.duration, script)

        baseline = results[targets[0].label]
        print()
        print(f"{'':24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  x p50  x p99")
        for label, result in results.items():
            print(
                f"{label:24} {result.requests / result.seconds:8.0f} {result.p50_ms:8.1f}"
                f" {result.p99_ms:8.1f} {result.error_count:7d}"
                f" {result.p50_ms / baseline.p50_ms:6.1f} {result.p99_ms / baseline.p99_ms:6.1f}"
            )
        errors = {label: r.errors for label, r in results.items() if r.error_count}
        if errors:
            print(f"errors: {json.dumps(errors)}")
            logged = (root / "web.log").read_text(errors="replace").splitlines()
            print("the server's log of them (last 20 lines):")
            for line in [line for line in logged if "WARNING" in line or "ERROR" in line][-20:]:
                print(f"  {line}")
        total = sum(r.error_count for r in results.values())
        print(f"errors in all: {total} (target 0): {verdict(total == 0)}")
        print(f"{machine()} at end")


if __name__ == "__main__":
    main()
