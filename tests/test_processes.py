"""Production's shape on one machine: three `tenantry worker` processes and two `tenantry web`
processes on one PostgreSQL control plane, with tenant databases on SQLite (the shared data
dir) and on two PostgreSQL servers. Several accounts send 100 operations of every kind through
the API, alternately to both web processes; one worker is killed (kill -9) in the middle of an
operation. Every operation runs exactly once, and none is lost.

"Exactly once" is read from the control plane itself: a trigger that the test adds to it
notes every change of an operation's state and any write to an ended one, so a second claim,
a takeover or a second run's end would show, whichever process made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PASSWORD
from tests.helpers import TENANTRY, env_for
from tests.postgres import PostgresServer, free_port

pytestmark = pytest.mark.slow

ACCOUNTS = 5
WORKERS = 3
WEBS = 2
# Low, so that a killed worker's operation is taken over within seconds; the live ones beat
# every STALE_SECONDS / 4.
STALE_SECONDS = 5
OPERATION_TIMEOUT = 120

# Each account's work, two operations at a time (its OPERATIONS_PER_ACCOUNT), on names of its
# own. After the creates, s0-s3 are on SQLite and p0, p1 on PostgreSQL; `move` is the
# operator's (no API has it), from p1's server to the other and back. 20 operations an
# account: 6 duplicates, 7 deletes, 3 upgrades, 2 moves, 2 restores.
SQLITE_CREATES = ["s0", "s1", "s2", "s3"]
POSTGRES_CREATES = ["p0", "p1"]
PAIRS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("duplicate", "s0", "c0"), ("duplicate", "p0", "c1")),
    (("upgrade", "s1"), ("move", "p1")),
    (("restore_upload", "p0", "r0"), ("duplicate", "s3", "c2")),  # a ZIP downloaded, sent back
    (("delete", "c0"), ("delete", "c1")),
    (("duplicate", "c2", "c3"), ("upgrade", "p0")),
    (("restore_over", "s1"), ("move", "p1")),  # from its backup made before the upgrade
    (("delete", "c2"), ("duplicate", "r0", "c4")),
    (("delete", "c3"), ("delete", "c4")),
    (("upgrade", "s3"), ("duplicate", "p1", "c5")),
    (("delete", "r0"), ("delete", "c5")),
]
OPERATIONS = ACCOUNTS * 2 * len(PAIRS)
# The activity entries an operation of each kind writes (a duplicate: the source's and the
# copy's), each ended once.
ENTRIES = {"duplicate": 2, "delete": 1, "move": 1, "restore": 1, "upgrade": 1}

# Every change of an operation's state, noted by the control database as it happens; and
# any write to an operation that has ended (noted as done -> done: a second run finishing).
TRANSITIONS_SQL = """
CREATE TABLE test_transitions (
    operation_id bigint NOT NULL,
    old_state text NOT NULL,
    new_state text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION test_note_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_transitions (operation_id, old_state, new_state)
    VALUES (NEW.id, OLD.state, NEW.state);
    RETURN NEW;
END $$;
CREATE TRIGGER test_transitions AFTER UPDATE ON operations_operation FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.state IN ('done', 'failed') AND
          (OLD.progress, OLD.step, OLD.error, OLD.finished_at)
          IS DISTINCT FROM (NEW.progress, NEW.step, NEW.error, NEW.finished_at))
    EXECUTE FUNCTION test_note_transition();
"""
ONCE = [("queued", "running"), ("running", "done")]
# Claimed, its worker killed, handed out again by recover(), claimed by another, done.
TAKEN_OVER = [("queued", "running"), ("running", "queued"), *ONCE]

# The accounts, each with developer mode on and an API key; the keys, printed.
SETUP = """
import json
from allauth.account.models import EmailAddress
from tenantry.accounts.models import ApiKey, User
keys = []
for i in range({accounts}):
    user = User.objects.create_user(f"a{{i}}@example.com", {password!r}, developer_mode=True)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    keys.append(ApiKey.objects.issue(user, "processes")[1])
print(json.dumps(keys))
"""

# The operator's console: moves, which only an operator starts, read from its standard input
# one database name a line; each answers with its operation's id.
CONSOLE = """
import json, sys
from tenantry.databases import activity, lifecycle
from tenantry.databases.models import Database
from tenantry.engines.models import Server
for line in sys.stdin:
    database = Database.objects.get(name=line.strip())
    to = Server.objects.exclude(pk=database.server_id).get()
    with activity.channel(activity.Activity.Channel.CLI):
        operation = lifecycle.start_move(database, to, by=None)
    print(json.dumps(operation.pk), flush=True)
"""


class Processes:
    """The `tenantry` processes of the test, each with its log, in a process group of its own
    (Granian's web workers are children): all of them end with the test."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
        log = (self.logs / f"{name}.log").open("w")
        process = subprocess.Popen(
            [TENANTRY, *args],
            env=self.env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdin else log,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        log.close()
        self.started[name] = process
        return process

    def run(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run(
            [TENANTRY, *args], input=stdin, capture_output=True, text=True, env=self.env,
            timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"tenantry {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tails(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.log(n)[-3000:]}" for n in self.started)

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for process in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # What is left of its group (a web worker whose parent went first).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Api:
    """The API as a client sees it: one key, its requests sent to each web process in turn."""

    def __init__(self, urls: list[str], key: str) -> None:
        self.urls, self.key, self.sent = urls, key, 0
        self.served: Counter[str] = Counter()

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        for _ in range(20):
            url = self.urls[self.sent % len(self.urls)]
            self.sent += 1
            headers = {"Authorization": f"Bearer {self.key}"}
            if content_type:
                headers["Content-Type"] = content_type
            request = urllib.request.Request(url + "/api/v1" + path, body, headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, data = error.code, error.read()
            if status == 429:  # the key's rate limit: wait as it says (not expected here)
                time.sleep(1)
                continue
            self.served[url] += 1
            is_json = data[:1] in (b"{", b"[")
            return status, json.loads(data) if is_json else data
        raise AssertionError(f"{method} {path}: rate-limited again and again")

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(payload).encode(), "application/json")

    def accepted(
        self, method: str, path: str, payload: dict[str, Any] | None = None,
        form: dict[str, Any] | None = None,
    ) -> int:  # fmt: skip
        """Start an operation (with a JSON payload, or a multipart form); its id."""
        if payload is not None:
            status, data = self.post(path, payload)
        elif form is not None:
            status, data = self.request(method, path, *multipart(form))
        else:
            status, data = self.request(method, path)
        assert status == 202, f"{method} {path}: {status} {data!r}"
        return int(data["id"])

    def wait(self, operation_id: int) -> None:
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while time.monotonic() < deadline:
            status, data = self.request("GET", f"/operations/{operation_id}")
            assert status == 200, data
            if data["state"] in ("done", "failed"):
                assert data["state"] == "done", data
                return
            time.sleep(0.4)
        raise AssertionError(f"operation {operation_id} still {data['state']}: {data}")


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    body = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'name="{name}"; filename="backup.zip"\r\nContent-Type: application/zip'
        else:
            head, value = f'name="{name}"', str(value).encode()
        body += f"--{boundary}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode()
        body += value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Account:
    """One account's client: it creates its databases, then runs its pairs of operations."""

    def __init__(self, index: int, api: Api, console: Console) -> None:
        self.prefix, self.api, self.console = f"a{index}", api, console
        self.operations: dict[int, tuple[str, ...]] = {}

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def create(self, shorts: list[str]) -> None:
        for short in shorts:
            status, data = self.api.post("/databases", {"name": self.name(short)})
            assert status == 201, f"create {self.name(short)}: {status} {data!r}"

    def run(self) -> None:
        for pair in PAIRS:
            started = [(self.start(*action), action) for action in pair]
            for operation_id, action in started:
                self.operations[operation_id] = action
                self.api.wait(operation_id)

    def start(self, kind: str, short: str, new: str = "") -> int:
        name = self.name(short)
        match kind:
            case "duplicate":
                payload = {"name": self.name(new)}
                return self.api.accepted("POST", f"/databases/{name}/duplicate", payload)
            case "delete":
                return self.api.accepted("DELETE", f"/databases/{name}")
            case "upgrade":
                payload = {"release": "2.0"}
                return self.api.accepted("POST", f"/databases/{name}/upgrade", payload)
            case "move":
                return self.console.move(name)
            case "restore_upload":
                status, zipped = self.api.request("GET", f"/databases/{name}/download")
                assert status == 200 and zipped[:2] == b"PK", (status, zipped[:200])
                path = f"/databases/{self.name(new)}/restore"
                return self.api.accepted("POST", path, form={"file": zipped})
            case "restore_over":
                status, data = self.api.request("GET", f"/databases/{name}/backups")
                assert status == 200, data
                before = [b["id"] for b in data["data"] if b["kind"] == "before_upgrade"]
                assert len(before) == 1, data
                form = {"backup": before[0], "replace": "true"}
                return self.api.accepted("POST", f"/databases/{name}/restore", form=form)
        raise AssertionError(kind)


class Console:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lock = process, threading.Lock()

    def move(self, name: str) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(name + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        assert answer, f"the operator's console ended before moving {name}"
        return int(json.loads(answer))


def in_threads(*targets: Any, failed: threading.Event | None = None) -> None:
    """Run the callables side by side; raise the first one's error (`failed` says there is
    one, to those that wait for the others)."""
    errors: list[BaseException] = []

    def guarded(target: Any) -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)
            if failed is not None:
                failed.set()

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def tenant_databases(server: PostgresServer) -> set[str]:
    rows = server.psql(r"SELECT datname FROM pg_database WHERE datname LIKE 'tn\_%'")
    return set(rows.split())


@pytest.fixture
def control(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh control database on a PostgreSQL server, as production's."""
    name = f"tenantry_processes_{secrets.token_hex(4)}"
    pg_server.psql(f"CREATE DATABASE {name}")
    yield pg_server.url_for(name)
    pg_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fleet(pg_servers: list[PostgresServer]) -> Iterator[list[PostgresServer]]:
    """The two tenant servers, left as they were found (the session shares them)."""
    before = [tenant_databases(server) for server in pg_servers]
    yield pg_servers
    for server, found in zip(pg_servers, before, strict=True):
        for name in tenant_databases(server) - found:
            server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def processes(tmp_path: Path, control: str, fleet: list[PostgresServer]) -> Iterator[Processes]:
    """The test's processes (each started by the test), all stopped before the databases they
    use are dropped."""
    env = env_for(tmp_path / "data") | {
        "TENANTRY_DATABASE_URL": control,
        "TENANTRY_OPERATION_STALE_SECONDS": str(STALE_SECONDS),
    }
    (tmp_path / "logs").mkdir()
    started = Processes(env, tmp_path / "logs")
    yield started
    started.stop()


def wait_until_up(processes: Processes, keys: list[str], urls: list[str]) -> dict[str, int]:
    """Wait for the web processes to answer and the workers to start; the workers' pids by
    their worker ids (which the tasks table names)."""
    deadline = time.monotonic() + 90
    pending = set(urls)
    workers: dict[str, int] = {}
    while pending or len(workers) < WORKERS:
        for name, process in processes.started.items():
            assert process.poll() is None, f"{name} ended:\n{processes.tails()}"
        assert time.monotonic() < deadline, f"not up in 90 s:\n{processes.tails()}"
        for url in list(pending):
            try:
                Api([url], keys[0]).request("GET", "/me")
                pending.discard(url)
            except OSError:
                pass
        for n in range(WORKERS):
            found = re.search(r"Starting worker worker_id=(\w+)", processes.log(f"worker{n}"))
            if found:
                workers[found[1]] = processes.started[f"worker{n}"].pid
        time.sleep(0.3)
    return workers


RUNNING_ON_A_WORKER = """
SELECT o.id, o.kind, o.progress, r.worker_ids->>-1
FROM operations_operation o
JOIN django_tasks_database_dbtaskresult r ON r.status = 'RUNNING'
    AND r.task_path LIKE '%run_operation' AND (r.args_kwargs->'args'->>0)::bigint = o.id
WHERE o.state = 'running'
"""


def kill_a_worker_mid_operation(
    db: psycopg.Connection[Any],
    workers: dict[str, int],
    processes: Processes,
    failed: threading.Event,
) -> tuple[set[int], str]:
    """Once a third of the operations are done, kill -9 a worker in the middle of one (stopped
    first, so that what it runs is read while it can change nothing); the operations it ran
    and its worker id."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not failed.is_set():
        done = db.execute("SELECT count(*) FROM operations_operation WHERE state = 'done'")
        if done.fetchone()[0] >= OPERATIONS // 3:  # type: ignore[index]
            break
        time.sleep(0.2)
    while time.monotonic() < deadline and not failed.is_set():
        for _, _, progress, worker in db.execute(RUNNING_ON_A_WORKER).fetchall():
            if worker not in workers or not 1 <= progress <= 90:
                continue
            pid = workers[worker]
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.2)  # what it sent before it stopped is committed
            running = {row[0] for row in db.execute(RUNNING_ON_A_WORKER) if row[3] == worker}
            if not running:  # it had just finished: let it go on, and pick again
                os.kill(pid, signal.SIGCONT)
                continue
            os.kill(pid, signal.SIGKILL)
            name = next(n for n, p in processes.started.items() if p.pid == pid)
            processes.started[name].wait()
            return running, worker
        time.sleep(0.02)
    tails = processes.tails()
    raise AssertionError(f"no worker was caught in the middle of an operation:\n{tails}")


def test_workers_and_web_processes_run_each_operation_once_and_lose_none_to_a_kill(
    processes: Processes, control: str, fleet: list[PostgresServer], tmp_path: Path
) -> None:
    began = time.monotonic()
    others = set().union(*(tenant_databases(server) for server in fleet))
    processes.run("migrate", "-v0")
    with psycopg.connect(control, autocommit=True) as db:
        db.execute(TRANSITIONS_SQL)  # type: ignore[arg-type]
    keys = json.loads(
        processes.run("shell", "-v0", "-c", SETUP.format(accounts=ACCOUNTS, password=PASSWORD))
    )
    ports = [free_port() for _ in range(WEBS)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for n, port in enumerate(ports):
        processes.start(f"web{n}", "web", "--bind", f"127.0.0.1:{port}", "--workers", "1")
    for n in range(WORKERS):
        processes.start(f"worker{n}", "worker")
    console = Console(processes.start("console", "shell", "-v0", "-c", CONSOLE, stdin=True))
    workers = wait_until_up(processes, keys, urls)
    accounts = [Account(i, Api(urls, key), console) for i, key in enumerate(keys)]
    up = time.monotonic()

    # The creates, through the API: SQLite first, then PostgreSQL once the operator has
    # registered two servers (new databases go to the one with the most room).
    in_threads(*(lambda a=a: a.create(SQLITE_CREATES) for a in accounts))
    for n, server in enumerate(fleet):
        processes.run("servers", "add", server.url, "--name", f"processes-{n}")
    in_threads(*(lambda a=a: a.create(POSTGRES_CREATES) for a in accounts))
    processes.run("releases", "publish", "2.0")  # the upgrades' target (created at 1.1)
    created = time.monotonic()

    killed: list[tuple[set[int], str]] = []
    failed = threading.Event()
    with psycopg.connect(control, autocommit=True) as db:
        in_threads(
            *(a.run for a in accounts),
            lambda: killed.append(kill_a_worker_mid_operation(db, workers, processes, failed)),
            failed=failed,
        )
        ran = time.monotonic()
        lost, dead_worker = killed[0]
        logs = processes.tails()

        # Each operation the accounts started, once: done, never failed, never run twice.
        started = {i: a for account in accounts for i, a in account.operations.items()}
        assert len(started) == OPERATIONS
        rows = db.execute("SELECT id, kind, state, error FROM operations_operation").fetchall()
        assert sorted(r[0] for r in rows) == sorted(started)
        assert [r for r in rows if r[2] != "done"] == [], logs
        assert Counter(r[1] for r in rows) == Counter(a[0].split("_")[0] for a in started.values())
        transitions: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for operation_id, old, new in db.execute(
            "SELECT operation_id, old_state, new_state FROM test_transitions ORDER BY at"
        ):
            transitions[operation_id].append((old, new))
        assert {i: t for i, t in transitions.items() if i in lost} == dict.fromkeys(
            lost, TAKEN_OVER
        ), logs
        assert {i: t for i, t in transitions.items() if i not in lost} == dict.fromkeys(
            set(started) - lost, ONCE
        ), logs

        # Their activity entries, once each, ended once.
        entries = db.execute(
            "SELECT o.id, o.kind, a.result FROM operations_operation o "
            "LEFT JOIN databases_activity a ON a.operation_id = o.id"
        ).fetchall()
        assert Counter((i, kind) for i, kind, _ in entries) == Counter(
            {(i, kind): ENTRIES[kind] for i, kind, _, _ in rows}
        )
        assert {result for _, _, result in entries} == {"done"}
        created_by_api = db.execute(
            "SELECT database_name, count(*) FROM databases_activity "
            "WHERE kind = 'create' AND operation_id IS NULL GROUP BY database_name"
        ).fetchall()
        names = SQLITE_CREATES + POSTGRES_CREATES
        assert dict(created_by_api) == {a.name(n): 1 for a in accounts for n in names}

        # The tasks table: every task ran to its end, but the one the killed worker held.
        deadline = time.monotonic() + 30
        while True:
            tasks = db.execute(
                "SELECT status, worker_ids->>-1, task_path FROM django_tasks_database_dbtaskresult"
            ).fetchall()
            unfinished = [t for t in tasks if t[0] != "SUCCESSFUL" and t[1] != dead_worker]
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert unfinished == [], logs
        held = [t for t in tasks if t[1] == dead_worker and t[0] != "SUCCESSFUL"]
        assert [(status, path.rsplit(".", 1)[1]) for status, _, path in held] == [
            ("RUNNING", "run_operation")
        ]

        # What is left is what the accounts made and kept, each once, and nothing else: no
        # copy twice, no orphan on a disk or a server.
        databases = db.execute(
            "SELECT name, physical_name, engine, status FROM databases_database"
        ).fetchall()
        assert sorted(d[0] for d in databases) == sorted(a.name(n) for a in accounts for n in names)
        assert {d[3] for d in databases} == {"active"}
        on_sqlite = {d[1] for d in databases if d[2] == "sqlite"}
        on_postgres = {d[1] for d in databases if d[2] == "postgresql"}
        assert len(on_sqlite) == ACCOUNTS * len(SQLITE_CREATES)
        assert len(on_postgres) == ACCOUNTS * len(POSTGRES_CREATES)
        data_dir = tmp_path / "data"
        files = {p.name.split(".")[0] for p in (data_dir / "tenants").glob("tn_*")}
        assert files == on_sqlite
        stores = {p.name for p in (data_dir / "filestore").glob("*")}
        assert stores <= on_sqlite | on_postgres
        servers = set().union(*(tenant_databases(server) for server in fleet))
        assert servers - others == on_postgres
        backups = Counter(
            kind for (kind,) in db.execute("SELECT kind FROM backups_backup WHERE state = 'ready'")
        )
        assert backups["before_upgrade"] == ACCOUNTS * 3
        assert backups["before_restore"] == ACCOUNTS
        assert backups["upload"] == 0  # each uploaded ZIP removed once restored

    # Both web processes served the accounts.
    served: Counter[str] = Counter()
    for account in accounts:
        served.update(account.api.served)
    assert set(served) == set(urls) and min(served.values()) > 0.4 * max(served.values())
    taken_over = ", ".join(f"{started[i][0]} {i}" for i in sorted(lost))
    print(
        f"\nprocesses up in {up - began:.1f} s, {ACCOUNTS * len(names)} creates in "
        f"{created - up:.1f} s, {OPERATIONS} operations in {ran - created:.1f} s "
        f"(taken over from the killed worker: {taken_over})"
    )
