"""Fleet benchmark: databases made through the product until thousands, then one server drained
under load.

Targets:
- placement and records do not slow down with the count: the create rate at the end is at
  least **0.8x** the rate at the start, the control-plane queries per create are the same,
  and the manager page (of an account with a few databases) and the gateway's added time at
  the end are at most **1.2x** those at the start;
- **zero failed requests** while a server of `--postgresql / 3` databases is drained
  (`tenantry servers drain`) under a load that reads and writes through the workspace of its
  databases; every database on the other two servers afterwards, nothing left on the drained
  one; the longest request is printed;
- the workspace page's p50/p99 under the same load with tenant connections pooled and not
  (`TENANTRY_TENANT_CONNECTIONS=0`).

Three PostgreSQL servers for the tenants and one for the control plane are started by the
bench; `--postgresql` databases (default 3,000: about 22 GB, so the free disk is checked first
and the count lowered, saying so) and `--sqlite` ones (default 10,000) are made with
`lifecycle.create`. The load: `--clients` threads (default 16), each signed in to the
workspace of databases on the drained server, looping over GET / , GET /contacts/ and a POST
that adds a contact, through a real `tenantry web` process (Granian, 2 processes).

    .venv/bin/python bench/fleet.py [--postgresql 3000] [--sqlite 10000] [--clients 16]
        [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from _setup import GIB, ROOT, machine, postgres, setup_django, verdict, workdir

PASSWORD = "a long bench passphrase"
PROBE_DATABASES = 5  # the manager page measured: an account with this many
BATCH = 100  # creates timed together, at the start and at the end
PG_BYTES = 7_500_000  # a PostgreSQL database made from the release's template, about


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Making databases


def create_batch(names: list[str], owner: Any) -> tuple[float, float]:
    """Creates a second and control-plane queries per create, for these names."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tenantry.databases import lifecycle

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        for name in names:
            lifecycle.create(name, by=owner)
        took = time.perf_counter() - started
    return len(names) / took, len(queries) / len(names)


def fill(prefix: str, count: int, owner: Any) -> dict[str, float]:
    """`count` databases; the first and last BATCH (a quarter of a small count) timed."""
    from tenantry.databases import lifecycle

    batch = min(BATCH, count // 4)
    first = create_batch([f"{prefix}-{n}" for n in range(batch)], owner)
    started = time.perf_counter()
    for n in range(batch, count - batch):
        lifecycle.create(f"{prefix}-{n}", by=owner)
        if n % 1000 == 0:
            rate = (n - batch) / (time.perf_counter() - started)
            print(f"  {prefix}: {n} of {count} ({rate:.1f}/s)", flush=True)
    last = create_batch([f"{prefix}-{n}" for n in range(count - batch, count)], owner)
    return {"start": first[0], "end": last[0], "queries_start": first[1], "queries_end": last[1]}


def manager_ms(client: Any) -> float:
    """The probe account's manager page: best of 20, in ms."""
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        assert client.get("/databases/").status_code == 200
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def gateway_ms(host: str) -> float:
    """What routing a request to `host` adds, against the portal's host (bench/gateway.py)."""
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tenantry.gateway.middleware import GatewayMiddleware

    middleware = GatewayMiddleware(lambda request: HttpResponse())
    factory = RequestFactory()

    def mean(on: str) -> float:
        times = []
        for _ in range(2000):
            request = factory.get("/", HTTP_HOST=on)
            started = time.perf_counter()
            middleware(request)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.mean(times)

    mean(host)  # the first lookup fills the cache
    return max(0.0, mean(host) - mean("127.0.0.1"))


# The load


@dataclass
class Load:
    """Clients reading and writing through the workspace of some databases, until stopped."""

    port: int
    names: list[str]
    clients: int
    times: dict[str, list[float]] = field(default_factory=lambda: {"page": [], "write": []})
    failures: list[str] = field(default_factory=list)
    longest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seconds: float | None = None) -> None:
        """Start the clients; once all are signed in, load for `seconds` (None: until end())."""
        self.ready = threading.Barrier(self.clients + 1)
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        self.ready.wait()
        if seconds is not None:
            time.sleep(seconds)
            self.stop.set()
        self.threads = threads

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def client(self, n: int) -> None:
        names = self.names[n :: self.clients] or self.names[:1]
        sessions = {name: self.sign_in(name) for name in names}
        self.ready.wait()
        turn = 0
        while not self.stop.is_set():
            name = names[turn % len(names)]
            cookies, token = sessions[name]
            self.request(name, "GET", "/", cookies, kind="page")
            self.request(name, "GET", "/contacts/", cookies, kind="page")
            body = f"csrfmiddlewaretoken={token}&name=Load+{n}+{turn}&email=&phone=&notes="
            self.request(name, "POST", "/contacts/", cookies, body=body, kind="write")
            turn += 1

    def host(self, name: str) -> str:
        return f"{name}.localhost:{self.port}"

    def sign_in(self, name: str) -> tuple[str, str]:
        status, headers, body = self.send(name, "GET", "/login/", "")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        cookie = "; ".join(v.split(";")[0] for k, v in headers if k.lower() == "set-cookie")
        assert token, f"no sign-in form on {name}: {status}"
        password = PASSWORD.replace(" ", "+")
        body_text = (
            f"csrfmiddlewaretoken={token.group(1).decode()}&login=owner%40example.com"
            f"&password={password}"
        )
        status, headers, _ = self.send(name, "POST", "/login/", cookie, body_text)
        assert status == 302, f"sign-in to {name} answered {status}"
        cookies = dict(c.split("=", 1) for c in cookie.split("; ") if "=" in c)
        for k, v in headers:
            if k.lower() == "set-cookie":
                key, value = v.split(";")[0].split("=", 1)
                cookies[key] = value
        jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return jar, cookies.get("csrftoken", token.group(1).decode())

    def send(
        self, name: str, method: str, path: str, cookies: str, body: str | None = None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Host": self.host(name), "Cookie": cookies}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"http://{self.host(name)}"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def request(
        self, name: str, method: str, path: str, cookies: str, body: str | None = None, *, kind: str
    ) -> None:
        started = time.perf_counter()
        try:
            status, _, _ = self.send(name, method, path, cookies, body)
            failed = None if status < 400 else f"{method} {name}{path}: {status}"
        except OSError as error:
            failed = f"{method} {name}{path}: {error}"
        took = (time.perf_counter() - started) * 1000
        with self.lock:
            self.times[kind].append(took)
            self.longest = max(self.longest, took)
            if failed:
                self.failures.append(failed)


def percentiles(times: list[float]) -> str:
    if len(times) < 2:
        return "no requests"
    cuts = statistics.quantiles(times, n=100)
    return f"p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms ({len(times)} requests)"


def web(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "web", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
            return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("tenantry web did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgresql", type=int, default=3000)
    parser.add_argument("--sqlite", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30, help="each pool measure")
    args = parser.parse_args()
    print(f"Fleet benchmark: {machine()}", flush=True)

    with workdir() as root, ExitStack() as stack:
        free = shutil.disk_usage(root).free
        wanted = args.postgresql * PG_BYTES * 1.3
        if wanted > free:
            fits = int(free / (PG_BYTES * 1.3)) // 3 * 3
            print(
                f"{free / GIB:.0f} GiB free: {args.postgresql} PostgreSQL databases need about "
                f"{wanted / GIB:.0f} GiB; making {fits} instead"
            )
            args.postgresql = fits
        control = stack.enter_context(postgres(root / "control"))
        tenants = [stack.enter_context(postgres(root / f"pg{n}")) for n in range(3)]
        control.psql("CREATE DATABASE tenantry")
        control_url = control.url_for("tenantry")
        port = free_port()
        os.environ["TENANTRY_PORTAL_URL"] = f"http://127.0.0.1:{port}"
        setup_django(root / "data", control_url)
        from django.core.management import call_command
        from django.test import Client

        call_command("createcachetable", verbosity=0)
        from tenantry.accounts.models import User
        from tenantry.databases.models import Database
        from tenantry.engines.models import Server

        owner = User.objects.create_user("owner@example.com", PASSWORD)
        probe = User.objects.create_user("probe@example.com", PASSWORD)
        servers = []
        for n, server in enumerate(tenants):
            record = Server(name=f"pg-{n}", capacity_bytes=10 * 1024**4)
            record.url = server.url
            record.save()
            servers.append(record)
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(probe)
        from tenantry.databases import lifecycle

        for n in range(PROBE_DATABASES):
            lifecycle.create(f"probe-{n}", by=probe)
        manager_start, gateway_start = manager_ms(client), gateway_ms("probe-0.localhost")

        pg = fill("pg", args.postgresql, owner)
        Server.objects.update(draining=True)  # the SQLite ones
        lite = fill("lite", args.sqlite, owner)
        Server.objects.update(draining=False)
        manager_end, gateway_end = manager_ms(client), gateway_ms("probe-0.localhost")
        for label, figures in [("PostgreSQL", pg), ("SQLite", lite)]:
            ratio = figures["end"] / figures["start"]
            print(
                f"{label} creates: {figures['start']:.1f}/s at the start, {figures['end']:.1f}/s "
                f"at the end: {ratio:.2f}x (target >= 0.8) {verdict(ratio >= 0.8)}; queries per "
                f"create {figures['queries_start']:.1f} then {figures['queries_end']:.1f} "
                f"{verdict(figures['queries_end'] <= figures['queries_start'])}"
            )
        total = Database.objects.count()
        for label, start, end in [
            ("manager page", manager_start, manager_end),
            ("gateway's added time", gateway_start, gateway_end),
        ]:
            ratio = end / start if start else 1.0
            print(
                f"{label}: {start:.2f} ms at {PROBE_DATABASES} databases, {end:.2f} ms at "
                f"{total}: {ratio:.2f}x (target <= 1.2) {verdict(ratio <= 1.2)}"
            )

        drained = servers[0]
        on_it = list(
            Database.objects.filter(server=drained)
            .exclude(name=None)
            .values_list("name", flat=True)
        )
        env = {**os.environ, "TENANTRY_DATABASE_URL": control_url}
        targets = [n for n in on_it if n.startswith("pg-")][: args.clients * 4]
        for connections_setting in ("0", ""):
            run_env = {**env, "TENANTRY_TENANT_CONNECTIONS": connections_setting}
            if not connections_setting:
                run_env.pop("TENANTRY_TENANT_CONNECTIONS")
            server = web(port, run_env)
            try:
                load = Load(port, targets, args.clients)
                load.run(args.seconds)
                load.end()
            finally:
                server.terminate()
                server.wait(timeout=30)
            label = "not pooled" if connections_setting == "0" else "pooled"
            print(f"workspace pages, {label}: {percentiles(load.times['page'])}")

        print(f"draining {drained.name} of {len(on_it)} databases under load", flush=True)
        server = web(port, env)
        workers = [
            subprocess.Popen([sys.executable, "-m", "tenantry", "worker"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)
        ]  # fmt: skip
        try:
            load = Load(port, targets, args.clients)
            load.run()
            started = time.perf_counter()
            drain = subprocess.run(
                [sys.executable, "-m", "tenantry", "servers", "drain", drained.name],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )  # fmt: skip
            took = time.perf_counter() - started
            load.end()
        finally:
            for process in [server, *workers]:
                process.terminate()
            for process in [server, *workers]:
                process.wait(timeout=60)
        assert drain.returncode == 0, drain.stderr[-2000:]
        left = Database.objects.filter(server=drained).exclude(name=None).count()
        physical = tenants[0].psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'tn_%'")
        requests = len(load.times["page"]) + len(load.times["write"])
        print(
            f"drained {len(on_it)} databases in {took:.0f} s; {left} records and {physical} "
            f"databases left on it {verdict(left == 0 and physical == '0')}"
        )
        print(
            f"under load: {requests} requests, {len(load.failures)} failed (target 0) "
            f"{verdict(not load.failures)}; the longest {load.longest / 1000:.1f} s; writes "
            f"{percentiles(load.times['write'])}"
        )
        for failure in load.failures[:10]:
            print(f"  {failure}")
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
